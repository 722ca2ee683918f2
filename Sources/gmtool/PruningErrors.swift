import Pruning
extension PruningError: UserFacingError {}
import Analysis
extension AnalysisError: UserFacingError {}
