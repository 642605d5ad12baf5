/*
 * JPEG decode straight into the model's letterboxed input, with libjpeg-turbo's
 * DCT scaling (1/1, 1/2, 1/4, 1/8) and, where the decode is larger than the input,
 * sharp's linear reduce (linear_reduce.c), on the libuv thread pool.
 *
 * Why by hand: sharp (libvips) decodes the same way, with the same library, but
 * builds a libvips pipeline per image; for a 320×180 JPEG that costs ~3 ms of CPU
 * where libjpeg-turbo itself takes ~0.15 ms, and on a 2-core line PC every such
 * millisecond is taken from inference (bench/results/2026-12-03-inference-speed.md).
 * No maintained npm package decodes with DCT scaling into a caller's buffer without
 * downloading binaries at install time. Anything this path does not vouch for
 * (a size sharp would enlarge or box-shrink to, CMYK, a libjpeg warning) is refused
 * here and goes to sharp, which stays the reference decoder and gives the errors.
 */
#include <node_api.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

#include "linear_reduce.h"

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
} ErrorManager;

static void on_error(j_common_ptr cinfo) {
  ErrorManager *err = (ErrorManager *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

/* A warning (corrupt data, premature end) fails the decode, as sharp's default
 * failOn: 'warning' does, so that both decoders take and refuse the same files. */
static void on_message(j_common_ptr cinfo, int level) {
  if (level < 0) on_error(cinfo);
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref input_ref;
  napi_ref output_ref;
  const unsigned char *input;
  size_t input_length;
  unsigned char *output;
  size_t output_length;
  int scale_denom;
  unsigned int width;
  unsigned int height;
  size_t row_stride;
  size_t offset;
  /* A decode that is resized: its rows go through this. */
  Reducer reducer;
  int failed;
  char message[JMSG_LENGTH_MAX + 64];
} DecodeJob;

static void fail(DecodeJob *job, const char *message) {
  job->failed = 1;
  snprintf(job->message, sizeof job->message, "%s", message);
}

static void decode(DecodeJob *job) {
  struct jpeg_decompress_struct cinfo;
  ErrorManager err;
  JSAMPROW rows[REDUCE_BATCH_ROWS];
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = on_error;
  err.pub.emit_message = on_message;
  err.message[0] = '\0';
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    fail(job, err.message);
    return;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, job->input, (unsigned long)job->input_length);
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space != JCS_YCbCr && cinfo.jpeg_color_space != JCS_GRAYSCALE && cinfo.jpeg_color_space != JCS_RGB) {
    jpeg_destroy_decompress(&cinfo);
    fail(job, "colour space other than YCbCr, RGB or grey");
    return;
  }
  cinfo.out_color_space = JCS_RGB;
  cinfo.scale_num = 1;
  cinfo.scale_denom = (unsigned int)job->scale_denom;
  jpeg_calc_output_dimensions(&cinfo);
  if (cinfo.output_components != 3) {
    jpeg_destroy_decompress(&cinfo);
    fail(job, "not decoded to RGB");
    return;
  }
  /* At the expected size the rows go straight to the output; otherwise through
   * sharp's linear reduce (linear_reduce.c), from the pixels libvips keeps of a
   * DCT-scaled decode: libjpeg rounds the scaled size up, libvips crops it down
   * (jpeg2vips.c, "strict round down on shrink-on-load"). Planned before anything is
   * decoded, so that a size this path does not take costs only the header. */
  const int resize = cinfo.output_width != job->width || cinfo.output_height != job->height;
  ReduceAxis v, h;
  if (resize && (!reduce_plan(&v, (int)(cinfo.image_height / cinfo.scale_denom), (int)job->height) ||
                 !reduce_plan(&h, (int)(cinfo.image_width / cinfo.scale_denom), (int)job->width))) {
    jpeg_destroy_decompress(&cinfo);
    fail(job, "decoded size is not one sharp's linear reduce takes to the expected size");
    return;
  }
  /* The last row must end inside the output buffer. */
  if (job->offset + (size_t)(job->height - 1) * job->row_stride + (size_t)job->width * 3 > job->output_length) {
    jpeg_destroy_decompress(&cinfo);
    fail(job, "output buffer too small");
    return;
  }
  /* From here libjpeg may jump back to the setjmp above: the reducer goes with the job. */
  if (resize && !reducer_start(&job->reducer, &v, &h, (size_t)cinfo.output_width * 3, job->output + job->offset, job->row_stride)) {
    jpeg_destroy_decompress(&cinfo);
    fail(job, "out of memory");
    return;
  }
  jpeg_start_decompress(&cinfo);
  while (cinfo.output_scanline < cinfo.output_height) {
    const unsigned int y = cinfo.output_scanline;
    unsigned int count = cinfo.output_height - y;
    if (count > REDUCE_BATCH_ROWS) count = REDUCE_BATCH_ROWS;
    for (unsigned int i = 0; i < count; i++) {
      rows[i] = resize ? reducer_row(&job->reducer, (int)(y + i)) : job->output + job->offset + (size_t)(y + i) * job->row_stride;
    }
    const unsigned int read = jpeg_read_scanlines(&cinfo, rows, count);
    if (resize && read > 0) reducer_push(&job->reducer, (int)(y + read - 1));
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
}

static void execute(napi_env env, void *data) {
  (void)env;
  DecodeJob *job = data;
  decode(job);
  reducer_end(&job->reducer);
}

static void complete(napi_env env, napi_status status, void *data) {
  DecodeJob *job = (DecodeJob *)data;
  if (status != napi_ok) fail(job, "the decode was cancelled");
  if (job->failed) {
    napi_value message, error;
    napi_create_string_utf8(env, job->message, NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &error);
    napi_reject_deferred(env, job->deferred, error);
  } else {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, job->deferred, undefined);
  }
  napi_delete_reference(env, job->input_ref);
  napi_delete_reference(env, job->output_ref);
  napi_delete_async_work(env, job->work);
  free(job);
}

#define CHECK(call)                                                            \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      napi_throw_error(env, NULL, "jpeg_decode: bad arguments");               \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

static int typed_bytes(napi_env env, napi_value value, void **data, size_t *length) {
  bool is_typed;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed) return 0;
  if (napi_get_typedarray_info(env, value, &type, length, data, NULL, NULL) != napi_ok) return 0;
  return type == napi_uint8_array;
}

/* decodeInto(input: Uint8Array, scaleDenom, output: Uint8Array, width, height,
 *            rowStride, offset): Promise<void>; width × height is the size written,
 *            reached by the reduce when the decode at 1/scaleDenom is larger. */
static napi_value decode_into(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 7) {
    napi_throw_type_error(env, NULL, "decodeInto takes 7 arguments");
    return NULL;
  }
  void *input, *output;
  size_t input_length, output_length;
  if (!typed_bytes(env, argv[0], &input, &input_length) || !typed_bytes(env, argv[2], &output, &output_length)) {
    napi_throw_type_error(env, NULL, "input and output must be Uint8Arrays");
    return NULL;
  }
  int32_t denom, width, height;
  int64_t row_stride, offset;
  CHECK(napi_get_value_int32(env, argv[1], &denom));
  CHECK(napi_get_value_int32(env, argv[3], &width));
  CHECK(napi_get_value_int32(env, argv[4], &height));
  CHECK(napi_get_value_int64(env, argv[5], &row_stride));
  CHECK(napi_get_value_int64(env, argv[6], &offset));
  if ((denom != 1 && denom != 2 && denom != 4 && denom != 8) || width <= 0 || height <= 0 || offset < 0 || row_stride < (int64_t)width * 3) {
    napi_throw_range_error(env, NULL, "decodeInto: scale 1, 2, 4 or 8, a positive size and a row stride of at least width × 3");
    return NULL;
  }
  DecodeJob *job = calloc(1, sizeof *job);
  if (!job) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  job->input = input;
  job->input_length = input_length;
  job->output = output;
  job->output_length = output_length;
  job->scale_denom = denom;
  job->width = (unsigned int)width;
  job->height = (unsigned int)height;
  job->row_stride = (size_t)row_stride;
  job->offset = (size_t)offset;
  napi_value promise, name;
  /* References keep both buffers alive (and in place) until the decode is done. */
  CHECK(napi_create_reference(env, argv[0], 1, &job->input_ref));
  CHECK(napi_create_reference(env, argv[2], 1, &job->output_ref));
  CHECK(napi_create_promise(env, &job->deferred, &promise));
  CHECK(napi_create_string_utf8(env, "sightline:jpeg_decode", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_async_work(env, NULL, name, execute, complete, job, &job->work));
  CHECK(napi_queue_async_work(env, job->work));
  return promise;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "decodeInto", NAPI_AUTO_LENGTH, decode_into, NULL, &fn);
  napi_set_named_property(env, exports, "decodeInto", fn);
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
