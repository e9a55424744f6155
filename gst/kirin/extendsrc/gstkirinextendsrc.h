#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_KIRIN_EXTEND_SRC (gst_kirin_extend_src_get_type())
G_DECLARE_FINAL_TYPE(GstKirinExtendSrc, gst_kirin_extend_src, GST, KIRIN_EXTEND_SRC, GstBin)

GST_ELEMENT_REGISTER_DECLARE(kirinextendsrc);

G_END_DECLS
