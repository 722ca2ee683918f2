// The HDF5 macros Swift cannot import (H5P_DEFAULT, H5T_NATIVE_FLOAT, ...) as static inline
// getters, plus the few calls whose names differ between HDF5 1.10 and 1.12+ (H5Oget_info,
// H5Literate, H5Ewalk) wrapped once here so the Swift side sees one stable API.
#ifndef GMTOOL_CHDF5_SHIM_H
#define GMTOOL_CHDF5_SHIM_H

#include <hdf5.h>
#include <string.h>

static inline hid_t gm_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t gm_H5S_ALL(void) { return H5S_ALL; }
static inline hid_t gm_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline hid_t gm_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t gm_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t gm_H5P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t gm_H5P_GROUP_CREATE(void) { return H5P_GROUP_CREATE; }
static inline hid_t gm_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline unsigned gm_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned gm_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline unsigned gm_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned gm_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline size_t gm_H5T_VARIABLE(void) { return H5T_VARIABLE; }

static inline hid_t gm_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t gm_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t gm_H5T_NATIVE_INT8(void) { return H5T_NATIVE_INT8; }
static inline hid_t gm_H5T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t gm_H5T_NATIVE_INT16(void) { return H5T_NATIVE_INT16; }
static inline hid_t gm_H5T_NATIVE_UINT16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t gm_H5T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t gm_H5T_NATIVE_UINT32(void) { return H5T_NATIVE_UINT32; }
static inline hid_t gm_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t gm_H5T_NATIVE_UINT64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t gm_H5T_C_S1(void) { return H5T_C_S1; }

/// Object type of `name` under `loc`: 0 group, 1 dataset, 2 named datatype, -1 missing or other,
/// -2 when libhdf5 failed to answer (the cause is on the error stack). Checks the link first so a
/// missing name is not an HDF5 error.
static inline int gm_object_kind(hid_t loc, const char *name) {
    htri_t exists = H5Lexists(loc, name, H5P_DEFAULT);
    if (exists < 0) return -2;
    if (exists == 0) return -1;
    hid_t obj = H5Oopen(loc, name, H5P_DEFAULT);
    if (obj < 0) return -2;
    H5I_type_t t = H5Iget_type(obj);
    if (H5Oclose(obj) < 0 || t == H5I_BADID) return -2;
    switch (t) {
        case H5I_GROUP: return 0;
        case H5I_DATASET: return 1;
        case H5I_DATATYPE: return 2;
        default: return -1;
    }
}

/// The deepest and the topmost descriptions on the default error stack, as
/// "top (bottom)" into `buffer`. Returns the number of stack entries.
typedef struct { char top[256]; char bottom[256]; int count; } gm_error_summary_t;

static herr_t gm_error_walker(unsigned n, const H5E_error2_t *err, void *data) {
    gm_error_summary_t *s = (gm_error_summary_t *)data;
    const char *desc = (err->desc && err->desc[0]) ? err->desc : (err->func_name ? err->func_name : "");
    if (n == 0) { strncpy(s->top, desc, sizeof(s->top) - 1); s->top[sizeof(s->top) - 1] = 0; }
    strncpy(s->bottom, desc, sizeof(s->bottom) - 1); s->bottom[sizeof(s->bottom) - 1] = 0;
    s->count = (int)n + 1;
    return 0;
}

static inline int gm_error_summary(gm_error_summary_t *out) {
    memset(out, 0, sizeof(*out));
    // A stack that cannot be walked leaves the summary empty: the caller still reports the
    // failed operation, only without libhdf5's explanation.
    if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, gm_error_walker, out) < 0) memset(out, 0, sizeof(*out));
    H5Eclear2(H5E_DEFAULT);
    return out->count;
}

/// Silences HDF5's automatic printing of its error stack to stderr; errors are turned into
/// Swift errors instead.
static inline herr_t gm_silence_errors(void) { return H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/// Drops the stack of a failure already handled. Its own status is moot: every libhdf5 API call
/// starts by clearing the stack anyway, this only keeps it from lingering until then.
static inline void gm_clear_errors(void) { H5Eclear2(H5E_DEFAULT); }

/// Number of attributes on an object (H5Oget_info's signature differs between 1.10 and 1.12).
static inline int gm_attribute_count(hid_t obj) {
#if H5_VERSION_GE(1, 12, 0)
    H5O_info2_t info;
    if (H5Oget_info3(obj, &info, H5O_INFO_NUM_ATTRS) < 0) return -1;
#else
    H5O_info_t info;
    if (H5Oget_info2(obj, &info, H5O_INFO_NUM_ATTRS) < 0) return -1;
#endif
    return (int)info.num_attrs;
}

/// Frees the strings HDF5 allocated for a variable-length string read; negative when a free
/// failed (every string is still attempted).
static inline herr_t gm_free_vlen_strings(char **strings, size_t count) {
    herr_t status = 0;
    for (size_t i = 0; i < count; i++) { if (strings[i] && H5free_memory(strings[i]) < 0) status = -1; }
    return status;
}

#endif
