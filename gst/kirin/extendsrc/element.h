// The element's own state, shared by the files that make up kirinextendsrc (the GObject
// shell, the run, the child source, the URI handler). Only the element's lock guards it;
// the lock is never held across I/O, a state change, a signal or a bus post.
#pragma once

#include "gstkirinextendsrc.h"
#include "outbox.h"
#include "plan.h"
#include "run.h"
#include "settings.h"

#include <memory>
#include <mutex>
#include <string>

struct GstKirinExtendSrcPrivate;

namespace kirin {

// The element's side of its runs (run-host.h).
class ElementRunHost final : public RunHost {
public:
  explicit ElementRunHost(GstKirinExtendSrcPrivate *priv) : priv_(priv) {}
  void publish(const Run &run, const std::function<void(Published &)> &change) override;
  void remember_paid(const Run &run, const PaidTask &paid) override;
  Outbox &outbox() override;

private:
  GstKirinExtendSrcPrivate *priv_;
};

} // namespace kirin

struct GstKirinExtendSrcPrivate {
  std::mutex lock;
  kirin::Settings settings;
  kirin::Published published;
  kirin::PaidTask paid; // step 1's task of an earlier run: the same request attaches to it
  // The current run: made by READY→PAUSED, dropped by PAUSED→READY, nowhere else.
  std::shared_ptr<kirin::Run> run;
  GstElement *source = nullptr;         // the HTTP source child, once a result is exposed
  GstElement *failed_source = nullptr;  // a child being replaced: its messages are dropped
  kirin::Outbox outbox;                 // what the runs' decisions tell the application (outbox.h)
  kirin::ElementRunHost run_host{this}; // what the runs touch of the element
};

struct _GstKirinExtendSrc {
  GstBin parent;
  GstPad *srcpad; // always present; targets the child's pad once the result is known
  GstKirinExtendSrcPrivate *priv;
};

enum { SIGNAL_SOURCE_SETUP, N_SIGNALS };
extern guint kirin_extend_src_signals[N_SIGNALS];

void gst_kirin_extend_src_uri_handler_init(gpointer iface, gpointer data);
