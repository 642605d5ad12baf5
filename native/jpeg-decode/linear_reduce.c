/*
 * Why by hand: the native decoder must hand the model the pixels sharp would, or the
 * model's results would depend on which decoder took an image. No library resamples
 * exactly as libvips does but libvips, and calling it is what costs sharp its fixed
 * ~2 ms per image. So this follows libvips 8.18's reducev/reduceh for uchar images
 * (the integer path its vector code computes too): masks sampled at 1/64 pixel from
 * the linear kernel, 12-bit coefficients, edges extended by copying.
 * test/jpeg-native.test.ts compares the result with sharp's on many sizes.
 */
#include "linear_reduce.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TRANSFORM_SCALE 64
#define INTERPOLATE_SHIFT 12
#define INTERPOLATE_SCALE (1 << INTERPOLATE_SHIFT)

int reduce_plan(ReduceAxis *axis, int in, int out) {
  memset(axis, 0, sizeof *axis);
  axis->in = in;
  axis->out = out;
  if (in <= 0 || out <= 0) return 0;
  /* sharp: shrink = in / out, then resize(1 / shrink); vips_resize keeps 1 px at least. */
  double scale = 1.0 / ((double)in / out);
  if (scale < 1.0 / in) scale = 1.0 / in;
  if (scale > 1.0) return 0; /* enlarging: vips_affine, not a reduce */
  if (scale == 1.0) return 1;
  const double shrink = 1.0 / scale; /* vips_reducev(in, 1.0 / vscale) */
  const int size = (int)((double)in / shrink + 0.5); /* VIPS_ROUND_UINT */
  if (size != out) return 0;
  /* With the default reducing gap of 2, a factor of 4 or more starts with a box shrink. */
  if (floor((double)in / size / 2.0) > 1) return 0;
  if (shrink == 1.0) return 1;
  const int points = 2 * (int)rint(shrink) + 1; /* vips_reduce_get_points, linear */
  if (points > REDUCE_MAX_POINTS) return 0;
  const double extra = size * shrink - in;
  const double offset = (1 + extra) / 2.0 - 1;
  axis->points = points;
  axis->pad = (int)ceil(points / 2.0) - 1;
  axis->shrink = shrink;
  axis->start = 0.5 * shrink - 0.5 - offset;
  for (int t = 0; t < REDUCE_MASKS; t++) {
    /* vips_reduce_make_mask → calculate_coefficients with filter<VIPS_KERNEL_LINEAR>. */
    double c[REDUCE_MAX_POINTS];
    const double x = (float)t / TRANSFORM_SCALE;
    const double half = x + points / 2.0 - 1;
    double sum = 0.0;
    for (int i = 0; i < points; i++) {
      const double xp = fabs((i - half) / shrink);
      c[i] = xp < 1.0 ? 1.0 - xp : 0.0;
      sum += c[i];
    }
    for (int i = 0; i < points; i++) axis->mask[t][i] = (short)(c[i] / sum * INTERPOLATE_SCALE);
  }
  return 1;
}

/* Which mask a sample position takes, and its first pixel: as reducev/reduceh compute them. */
static inline const short *mask_at(const ReduceAxis *axis, double pos, int *first) {
  const int sp = (int)(pos * TRANSFORM_SCALE * 2);
  *first = (int)pos - axis->pad;
  return axis->mask[((sp & (TRANSFORM_SCALE * 2 - 1)) + 1) >> 1];
}

static inline int clamp_index(int i, int n) {
  return i < 0 ? 0 : i >= n ? n - 1 : i;
}

static inline unsigned char to_uchar(int32_t sum) {
  sum >>= INTERPOLATE_SHIFT;
  return (unsigned char)(sum < 0 ? 0 : sum > 255 ? 255 : sum);
}

/* Ring slots: the rows one output row spans, and a batch of rows libjpeg writes at once. */
static int ring_rows(const Reducer *r) {
  return (r->v.points ? r->v.points : 1) + REDUCE_BATCH_ROWS;
}

int reducer_start(Reducer *r, const ReduceAxis *v, const ReduceAxis *h, size_t in_stride, unsigned char *dst, size_t dst_stride) {
  memset(r, 0, sizeof *r);
  r->v = *v;
  r->h = *h;
  r->row = (size_t)h->in * 3;
  r->in_stride = in_stride;
  r->dst = dst;
  r->dst_stride = dst_stride;
  r->pos = v->start;
  r->ring = malloc(in_stride * (size_t)ring_rows(r));
  r->mid = malloc(r->row);
  if (!r->ring || !r->mid) return 0;
  if (!h->points) return 1;
  /* The taps of each output column are the same on every row: find them once. */
  const int n = h->points;
  r->taps = malloc((size_t)h->out * n * sizeof *r->taps);
  r->masks = malloc((size_t)h->out * sizeof *r->masks);
  if (!r->taps || !r->masks) return 0;
  double pos = h->start;
  for (int x = 0; x < h->out; x++, pos += h->shrink) {
    int first;
    r->masks[x] = mask_at(h, pos, &first);
    for (int i = 0; i < n; i++) r->taps[x * n + i] = clamp_index(first + i, h->in) * 3;
  }
  return 1;
}

void reducer_end(Reducer *r) {
  free(r->ring);
  free(r->mid);
  free(r->taps);
  free((void *)r->masks);
  r->ring = r->mid = NULL;
  r->taps = NULL;
  r->masks = NULL;
}

unsigned char *reducer_row(Reducer *r, int y) {
  return r->ring + (size_t)(y % ring_rows(r)) * r->in_stride;
}

/* The hot loops are built for AVX2 as well as the baseline, picked at load time (GCC's
 * function multiversioning): the baseline x86-64 has no 32-bit vector multiply. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

/* reduceh of one row into the output, the tap count a constant as in reduce_rows. */
static inline __attribute__((always_inline)) void reduce_columns_n(const int *restrict taps, const short *const *restrict masks, const int n, int out,
                                                                   const unsigned char *restrict p, unsigned char *restrict q) {
  for (int x = 0; x < out; x++) {
    const short *restrict k = masks[x];
    const int *restrict t = taps + x * n;
    int32_t red = INTERPOLATE_SCALE >> 1, green = red, blue = red;
    for (int i = 0; i < n; i++) {
      const unsigned char *restrict s = p + t[i];
      red += k[i] * s[0];
      green += k[i] * s[1];
      blue += k[i] * s[2];
    }
    q[x * 3] = to_uchar(red);
    q[x * 3 + 1] = to_uchar(green);
    q[x * 3 + 2] = to_uchar(blue);
  }
}

HOT static void reduce_columns(const int *restrict taps, const short *const *restrict masks, int n, int out, const unsigned char *restrict p,
                               unsigned char *restrict q) {
  switch (n) {
  case 3: reduce_columns_n(taps, masks, 3, out, p, q); break;
  case 5: reduce_columns_n(taps, masks, 5, out, p, q); break;
  case 7: reduce_columns_n(taps, masks, 7, out, p, q); break;
  default: reduce_columns_n(taps, masks, REDUCE_MAX_POINTS, out, p, q); break;
  }
}

static void write_row(const Reducer *r, const unsigned char *p, int y) {
  unsigned char *q = r->dst + (size_t)y * r->dst_stride;
  if (r->h.points) reduce_columns(r->taps, r->masks, r->h.points, r->h.out, p, q);
  else memcpy(q, p, r->row);
}

/* reducev of one output row, with the tap count a constant so that the compiler
 * unrolls the taps and vectorises across the row, summing in registers. */
static inline __attribute__((always_inline)) void reduce_rows_n(const unsigned char *const *restrict rows, const short *restrict k, const int n,
                                                                size_t row, unsigned char *restrict q) {
  for (size_t x = 0; x < row; x++) {
    int32_t sum = INTERPOLATE_SCALE >> 1;
    for (int i = 0; i < n; i++) sum += k[i] * rows[i][x];
    q[x] = to_uchar(sum);
  }
}

HOT static void reduce_rows(const unsigned char *const *restrict rows, const short *restrict k, int n, size_t row, unsigned char *restrict q) {
  switch (n) {
  case 3: reduce_rows_n(rows, k, 3, row, q); break;
  case 5: reduce_rows_n(rows, k, 5, row, q); break;
  case 7: reduce_rows_n(rows, k, 7, row, q); break;
  default: reduce_rows_n(rows, k, REDUCE_MAX_POINTS, row, q); break;
  }
}

void reducer_push(Reducer *r, int y) {
  if (!r->v.points) {
    for (; r->next <= y && r->next < r->v.out; r->next++) write_row(r, reducer_row(r, r->next), r->next);
    return;
  }
  const int n = r->v.points;
  const unsigned char *rows[REDUCE_MAX_POINTS];
  for (; r->next < r->v.out; r->next++) {
    int first;
    const short *k = mask_at(&r->v, r->pos, &first);
    const int last = first + n - 1 < r->v.in - 1 ? first + n - 1 : r->v.in - 1;
    if (last > y) return;
    for (int i = 0; i < n; i++) rows[i] = reducer_row(r, clamp_index(first + i, r->v.in));
    reduce_rows(rows, k, n, r->row, r->mid);
    write_row(r, r->mid, r->next);
    /* Accumulated output row by output row, as reducev does. */
    r->pos += r->v.shrink;
  }
}
