/*
 * Downsizing with sharp's linear kernel, pixel for pixel as libvips 8.18 does it for
 * sharp's resize(w, h, { fit: 'fill', kernel: 'linear' }) of 8-bit RGB: vips_resize's
 * reducev, then reduceh (libvips/resample/reducev.cpp, reduceh.cpp, templates.h).
 */
#ifndef SIGHTLINE_LINEAR_REDUCE_H
#define SIGHTLINE_LINEAR_REDUCE_H

#include <stddef.h>
#include <stdint.h>

/* libvips: VIPS_TRANSFORM_SCALE + 1 sub-pixel masks. */
#define REDUCE_MASKS 65
#define REDUCE_MAX_POINTS 9

/* One axis: in pixels to out pixels. */
typedef struct {
  int in;
  int out;
  /* 0: the axis keeps its size (libvips copies it). */
  int points;
  /* libvips pads the input with copies of its edge pixels; `pad` of them come first. */
  int pad;
  double shrink;
  /* Where output pixel 0 samples, in padded input pixels. */
  double start;
  short mask[REDUCE_MASKS][REDUCE_MAX_POINTS];
} ReduceAxis;

/*
 * Plans one axis as libvips would for sharp: 0 when libvips would do anything but a
 * plain linear reduce there (enlarge, a box shrink first, a mask too wide), so that
 * the caller leaves the image to sharp.
 */
int reduce_plan(ReduceAxis *axis, int in, int out);

/*
 * Reduces an RGB image as it is decoded: the caller writes input rows (up to
 * REDUCE_BATCH_ROWS at a time, rows `in_stride` bytes long; pixels past h.in and rows
 * past v.in are ignored) into reducer_row(y), then calls reducer_push(last row written),
 * which writes every output row they complete. Vertical first and rounded to 8 bits
 * in between, as libvips does; only the rows one output row spans are held.
 */
#define REDUCE_BATCH_ROWS 16

typedef struct {
  ReduceAxis v;
  ReduceAxis h;
  size_t row;           /* bytes of an input row that are used: h.in × 3 */
  size_t in_stride;     /* bytes of an input row as decoded */
  unsigned char *ring;  /* v.points + REDUCE_BATCH_ROWS input rows */
  unsigned char *mid;   /* one output row of the vertical pass */
  int *taps;            /* per output column, its input pixels (× 3) */
  const short **masks;  /* per output column, its mask */
  int next;             /* the next output row to write */
  double pos;           /* where it samples (accumulated, as reducev does) */
  unsigned char *dst;
  size_t dst_stride;
} Reducer;

/* 0 when out of memory; reducer_end frees what was allocated either way. */
int reducer_start(Reducer *r, const ReduceAxis *v, const ReduceAxis *h, size_t in_stride, unsigned char *dst, size_t dst_stride);
unsigned char *reducer_row(Reducer *r, int y);
void reducer_push(Reducer *r, int y);
void reducer_end(Reducer *r);

#endif
