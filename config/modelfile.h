/*
 * modelfile.h -- a model's gain or bias vector from a file, as PyTorch and
 * Hugging Face export them: a NumPy .npy array, or one named tensor of a
 * .safetensors file. A leaf of config/: libc and jansson (the safetensors
 * header is JSON), nothing else of the tree.
 *
 * Accepted (everything else is rejected with a reason):
 *   .npy          format versions 1.0, 2.0 and 3.0; descr '<f2', '<f4',
 *                 '<f8' or their big-endian '>' twins (converted); shape
 *                 (N,) or (1, N); fortran_order False, or True (a vector
 *                 has the same bytes in either order); the array's bytes
 *                 end the file. bfloat16 has no NumPy dtype, so none here.
 *   .safetensors  an 8-byte little-endian header length, a JSON header
 *                 {NAME: {"dtype", "shape", "data_offsets"}, ...,
 *                 "__metadata__": {string: string}} and the data. The file
 *                 is checked the way the safetensors library checks it:
 *                 every tensor's offsets lie in the data, sizes match
 *                 shape x dtype size for every dtype it knows, and the
 *                 tensors tile the data with no overlap and no gap. The
 *                 tensor asked for has dtype F32, F16, BF16 or F64 and
 *                 shape [N] or [1, N].
 * Values become float32: F16/BF16 widen exactly, F64 rounds to nearest.
 * A value that is NaN or infinite (F64 beyond float32's range included)
 * is rejected with its index.
 *
 * Files are read with pread, in chunks, straight into the caller's out[]:
 * the only allocation is the header, and only after its length has been
 * checked against the file's size. Non-regular files (FIFOs, devices) are
 * refused without blocking on them.
 *
 * Errors: -1 and a message in err (MODELFILE_ERR_MAX bytes), shaped
 *   "FILE: tensor NAME: reason (expected ...)"   for .safetensors
 *   "FILE: reason (expected ...)"                for .npy (one array, no name)
 * Thread-safe: no state outside the arguments.
 */
#pragma once

#include <stddef.h>

#define MODELFILE_ERR_MAX 512

/*
 * Loads the .npy array at path into out[0..expected_len). The array must
 * hold exactly expected_len (> 0) values. Returns 0, or -1 with err set;
 * out may be partly written on error.
 */
int modelfile_load_npy(const char *path, size_t expected_len, float *out, char *err);

/*
 * Loads tensor tensor_name of the .safetensors file at path into
 * out[0..expected_len), as modelfile_load_npy.
 */
int modelfile_load_safetensors(const char *path, const char *tensor_name, size_t expected_len,
                               float *out, char *err);

/*
 * The number of values the .npy array at path holds, in *len, after
 * checking everything but the values themselves (for a model whose dim
 * comes from its file). Returns 0, or -1 with err set.
 */
int modelfile_probe_npy(const char *path, size_t *len, char *err);

/* The same for tensor tensor_name of a .safetensors file. */
int modelfile_probe_safetensors(const char *path, const char *tensor_name, size_t *len, char *err);
