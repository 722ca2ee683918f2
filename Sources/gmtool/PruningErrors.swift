import Pruning
extension PruningError: UserFacingError {}
