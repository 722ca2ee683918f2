#include "image_decode.h"
#include <png.h>
#include <stdio.h>
#include <jpeglib.h>
#include <jerror.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

static int is_png(const unsigned char *d, size_t n) { return n >= 8 && png_sig_cmp(d, 0, 8) == 0; }
static int is_jpeg(const unsigned char *d, size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }

/* ---- PNG ---- */

struct png_source { const unsigned char *data; size_t size, offset; };
struct png_failure { jmp_buf jump; char *error; size_t error_size; };

static void png_read_memory(png_structp png, png_bytep out, png_size_t n) {
    struct png_source *s = png_get_io_ptr(png);
    if (n > s->size - s->offset) png_error(png, "the file ends early (truncated)");
    memcpy(out, s->data + s->offset, n);
    s->offset += n;
}
static void png_fail(png_structp png, png_const_charp message) {
    struct png_failure *f = png_get_error_ptr(png);
    snprintf(f->error, f->error_size, "corrupt PNG (%s)", message);
    longjmp(f->jump, 1);
}
static void png_warn(png_structp png, png_const_charp message) { (void)png; (void)message; }

static int decode_png(const unsigned char *data, size_t size, int channels, size_t max_bytes, int header_only,
                      int *width, int *height, unsigned char **pixels, char *error, size_t error_size) {
    struct png_source source = {data, size, 0};
    struct png_failure failure = {.error = error, .error_size = error_size};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure, png_fail, png_warn);
    if (!png) { snprintf(error, error_size, "out of memory"); return 1; }
    png_infop info = png_create_info_struct(png);
    unsigned char *volatile out = NULL;
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(error, error_size, "out of memory");
        return 1;
    }
    if (setjmp(failure.jump)) {
        free(out);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    png_set_read_fn(png, &source, png_read_memory);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    *width = (int)w;
    *height = (int)h;
    if (header_only) { png_destroy_read_struct(&png, &info, NULL); return 0; }
    if (depth == 16) {
        snprintf(error, error_size, "is a 16-bit PNG; gmtool reads 8-bit images (Keras would give 0-65535 values)");
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    if ((size_t)w * h * (size_t)channels > max_bytes) {
        snprintf(error, error_size, "declares %ux%u pixels, more than gmtool reads for one image", w, h);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    /* As TensorFlow's png_io: palette to RGB, low-bit gray to 8 bits, transparency and alpha
       dropped (channels 1 or 3 have none), gray to RGB or RGB to gray as asked. */
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    int is_gray = !(color & PNG_COLOR_MASK_COLOR) && color != PNG_COLOR_TYPE_PALETTE;
    if (channels == 3 && is_gray) png_set_gray_to_rgb(png);
    if (channels == 1 && !is_gray) png_set_rgb_to_gray(png, 1, 0.299, 0.587);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if ((int)png_get_channels(png, info) != channels || png_get_rowbytes(png, info) != (size_t)w * channels) {
        snprintf(error, error_size, "is a PNG whose pixel layout gmtool cannot convert to %d channel%s", channels, channels == 1 ? "" : "s");
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    out = malloc((size_t)w * h * channels + 1);
    rows = malloc(sizeof(png_bytep) * (h ? h : 1));
    if (!out || !rows) { snprintf(error, error_size, "out of memory"); longjmp(failure.jump, 1); }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = out + (size_t)y * w * channels;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    *pixels = out;
    return 0;
}

/* ---- JPEG ---- */

struct jpeg_failure { struct jpeg_error_mgr manager; jmp_buf jump; char *error; size_t error_size; int truncated; };

static void jpeg_fail(j_common_ptr info) {
    struct jpeg_failure *f = (struct jpeg_failure *)info->err;
    char message[JMSG_LENGTH_MAX];
    info->err->format_message(info, message);
    snprintf(f->error, f->error_size, "corrupt JPEG (%s)", message);
    longjmp(f->jump, 1);
}
/* Warnings are ignored as TensorFlow ignores them, except data ending early: libjpeg would
   fill the rest with gray, TensorFlow refuses the file. */
static void jpeg_message(j_common_ptr info, int level) {
    struct jpeg_failure *f = (struct jpeg_failure *)info->err;
    if (level < 0 && info->err->msg_code == JWRN_JPEG_EOF) f->truncated = 1;
}

static int decode_jpeg(const unsigned char *data, size_t size, int channels, size_t max_bytes, int header_only,
                       int *width, int *height, unsigned char **pixels, char *error, size_t error_size) {
    struct jpeg_decompress_struct info;
    struct jpeg_failure failure = {.error = error, .error_size = error_size};
    unsigned char *volatile out = NULL;
    info.err = jpeg_std_error(&failure.manager);
    failure.manager.error_exit = jpeg_fail;
    failure.manager.emit_message = jpeg_message;
    if (setjmp(failure.jump)) {
        free(out);
        jpeg_destroy_decompress(&info);
        return 1;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)size);
    jpeg_read_header(&info, TRUE);
    *width = (int)info.image_width;
    *height = (int)info.image_height;
    if (header_only) { jpeg_destroy_decompress(&info); return 0; }
    if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
        snprintf(error, error_size, "is a CMYK JPEG; gmtool reads grayscale and RGB JPEGs");
        jpeg_destroy_decompress(&info);
        return 1;
    }
    if ((size_t)info.image_width * info.image_height * (size_t)channels > max_bytes) {
        snprintf(error, error_size, "declares %ux%u pixels, more than gmtool reads for one image", info.image_width, info.image_height);
        jpeg_destroy_decompress(&info);
        return 1;
    }
    /* TensorFlow's decode_jpeg defaults: integer-fast DCT, fancy upsampling. */
    info.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    info.dct_method = JDCT_IFAST;
    info.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&info);
    size_t stride = (size_t)info.output_width * info.output_components;
    out = malloc(stride * info.output_height + 1);
    if (!out) { snprintf(error, error_size, "out of memory"); longjmp(failure.jump, 1); }
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = out + stride * info.output_scanline;
        jpeg_read_scanlines(&info, &row, 1);
        if (failure.truncated) { snprintf(error, error_size, "is a truncated JPEG (its data ends early)"); longjmp(failure.jump, 1); }
    }
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);
    if (failure.truncated) { free(out); snprintf(error, error_size, "is a truncated JPEG (its data ends early)"); return 1; }
    *pixels = out;
    return 0;
}

int gm_decode_image(const unsigned char *data, size_t size, int channels, size_t max_bytes,
                    int *width, int *height, unsigned char **pixels, char *error, size_t error_size) {
    *pixels = NULL;
    if (is_png(data, size)) return decode_png(data, size, channels, max_bytes, 0, width, height, pixels, error, error_size);
    if (is_jpeg(data, size)) return decode_jpeg(data, size, channels, max_bytes, 0, width, height, pixels, error, error_size);
    snprintf(error, error_size, "is neither a PNG nor a JPEG");
    return 1;
}

int gm_image_size(const unsigned char *data, size_t size, int *width, int *height, char *error, size_t error_size) {
    unsigned char *unused = NULL;
    if (is_png(data, size)) return decode_png(data, size, 1, 0, 1, width, height, &unused, error, error_size);
    if (is_jpeg(data, size)) return decode_jpeg(data, size, 1, 0, 1, width, height, &unused, error, error_size);
    snprintf(error, error_size, "is neither a PNG nor a JPEG");
    return 1;
}

void gm_free_pixels(unsigned char *pixels) { free(pixels); }
