#ifndef GMTOOL_IMAGE_DECODE_H
#define GMTOOL_IMAGE_DECODE_H
#include <stddef.h>

/// Decodes a PNG or JPEG held in memory to 8-bit pixels with `channels` (1: grayscale, 3: RGB)
/// per pixel, the conversions TensorFlow's decode_png/decode_jpeg make for the same channel
/// count. libpng and libjpeg report errors by longjmp, which only C can catch: this file is the
/// only place that calls them. The dimensions are checked against `max_bytes` before the pixel
/// buffer is allocated. Returns 0 and sets *pixels (free with gm_free_pixels), or returns
/// non-zero with a message in `error`.
int gm_decode_image(const unsigned char *data, size_t size, int channels, size_t max_bytes,
                    int *width, int *height, unsigned char **pixels, char *error, size_t error_size);

/// The image's width and height from its header alone (0 on success).
int gm_image_size(const unsigned char *data, size_t size, int *width, int *height, char *error, size_t error_size);

void gm_free_pixels(unsigned char *pixels);

#endif
