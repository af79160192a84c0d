/*
 * canvas.h -- the PNG view's small RGB canvas, for other pictures (the training loss curve):
 * rectangles, anti-aliased lines, the built-in bitmap font, and our own PNG encoder.
 */
#ifndef QKV_CANVAS_H
#define QKV_CANVAS_H

#include "qkv.h"

#include <stdint.h>

typedef struct qkv__canvas {
    int w, h;
    uint8_t *px; /* [h, w, 3] */
} qkv__canvas;

/* A w x h canvas filled with bg (w, h in [1, 8192]). */
qkv_status qkv__canvas_init(qkv__canvas *c, int w, int h, const uint8_t bg[3]);
void qkv__canvas_free(qkv__canvas *c);
void qkv__canvas_rect(qkv__canvas *c, float x, float y, float w, float h, const uint8_t rgb[3]);
/* A segment width pixels wide, anti-aliased (coverage from the distance to the segment). */
void qkv__canvas_line(qkv__canvas *c, float x0, float y0, float x1, float y1, float width,
                      const uint8_t rgb[3]);
/* ASCII text (7 x 14 px per glyph), baseline at y; align -1 left, 0 centre, 1 right of x;
 * rotated: reading upwards (the SVG's rotate(-90)). */
void qkv__canvas_text(qkv__canvas *c, float x, float y, const char *s, const uint8_t rgb[3],
                      int align, int rotated);
/* The canvas as PNG bytes (*out malloc'd). */
qkv_status qkv__canvas_png(const qkv__canvas *c, char **out, size_t *len);

#endif /* QKV_CANVAS_H */
