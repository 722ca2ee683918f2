// CBLAS from OpenBLAS (Debian's libopenblas-dev). The BLAS thread count is set from Swift so
// gmtool's own worker threads and BLAS threads never oversubscribe the cores.
#ifndef GMTOOL_CBLAS_SHIM_H
#define GMTOOL_CBLAS_SHIM_H
#include <cblas.h>
static inline void gm_blas_set_threads(int n) { openblas_set_num_threads(n); }
#endif
