#!/usr/bin/python3
# A PyGObject application whose source-setup handler configures the download source of
# kirinextendsrc (souphttpsrc): a proxy with credentials, cookies, extra headers and a CA file,
# as applications written for souphttpsrc do. Run by tests/check/source-setup.cpp against the
# emulator, which reads the service and key from VTRIX_API_URL and VTRIX_API_KEY.
#
# Usage: source_setup.py element|playbin [--proxy URL --proxy-id ID --proxy-pw PW]
#            [--cookie NAME=VALUE]... [--header NAME=VALUE]... [--ssl-ca-file PATH]
#            [--tls-database PEM] [--expect-error DOMAIN:CODE [--expect-status N]
#            [--expect-text TEXT]...]
# "element" runs kirinextendsrc ! fakesink; "playbin" plays kirin://demo-5s and reaches the
# kirinextendsrc through playbin's own source-setup. Without --expect-error the run must end
# with EOS; with it, with that error (e.g. resource:NOT_AUTHORIZED), naming the task.
# --tls-database sets the source's tls-database to a GTlsFileDatabase of that file.
# Prints what it saw; exits 0 when every check passed, else 1 after a line "FAIL: why".
import argparse
import sys
import time

import gi

gi.require_version('Gst', '1.0')
from gi.repository import Gio, Gst  # noqa: E402

failures = []


def check(condition, why):
    if not condition:
        failures.append(why)
    return condition


def pair(text):
    name, sep, value = text.partition('=')
    if not sep or not name:
        raise argparse.ArgumentTypeError('expected NAME=VALUE, not %r' % text)
    return name, value


parser = argparse.ArgumentParser()
parser.add_argument('mode', choices=['element', 'playbin'])
parser.add_argument('--proxy')
parser.add_argument('--proxy-id')
parser.add_argument('--proxy-pw')
parser.add_argument('--cookie', action='append', default=[])
parser.add_argument('--header', action='append', default=[], type=pair)
parser.add_argument('--ssl-ca-file')
parser.add_argument('--tls-database')
parser.add_argument('--expect-error')
parser.add_argument('--expect-status', type=int)
parser.add_argument('--expect-text', action='append', default=[])
parser.add_argument('--expect-warning', action='append', default=[])
args = parser.parse_args()

Gst.init(None)
sources = []  # the factory name of each source the handler configured


def on_source_setup(kirin, source):
    """The application's handler, written for souphttpsrc."""
    sources.append(source.get_factory().get_name())
    if args.proxy:
        source.set_property('proxy', args.proxy)
    if args.proxy_id:
        source.set_property('proxy-id', args.proxy_id)
        source.set_property('proxy-pw', args.proxy_pw)
    if args.cookie:
        source.set_property('cookies', args.cookie)
    if args.header:
        headers = Gst.Structure.new_empty('extra-headers')
        for name, value in args.header:
            headers.set_value(name, value)
        source.set_property('extra-headers', headers)
    if args.ssl_ca_file:
        source.set_property('ssl-ca-file', args.ssl_ca_file)
        print('the source holds ssl-ca-file %r' % source.get_property('ssl-ca-file'))
    if args.tls_database:
        source.set_property('tls-database', Gio.TlsFileDatabase.new(args.tls_database))
    # souphttpsrc holds the proxy as a URI (a "/" added) and the cookies as set.
    proxy = (source.get_property('proxy') or '').rstrip('/')
    check(proxy == (args.proxy or ''), 'the source holds the proxy %r' % proxy)
    check(list(source.get_property('cookies') or []) == args.cookie, 'cookies not kept')


received = [0]  # bytes, in element mode


def on_handoff(sink, buffer, pad):
    received[0] += buffer.get_size()


if args.mode == 'element':
    pipeline = Gst.parse_launch('kirinextendsrc name=kirin video-id=demo-5s poll-interval=50 '
                                '! fakesink name=sink signal-handoffs=true sync=false')
    pipeline.get_by_name('kirin').connect('source-setup', on_source_setup)
    pipeline.get_by_name('sink').connect('handoff', on_handoff)
else:
    pipeline = Gst.ElementFactory.make('playbin')
    pipeline.set_property('uri', 'kirin://demo-5s?poll-interval=50')
    for prop in ('video-sink', 'audio-sink'):
        sink = Gst.ElementFactory.make('fakesink')
        sink.set_property('sync', False)
        pipeline.set_property(prop, sink)

    def on_playbin_source_setup(playbin, source):
        check(source.get_factory().get_name() == 'kirinextendsrc',
              'playbin handed out %s, not kirinextendsrc' % source.get_factory().get_name())
        source.connect('source-setup', on_source_setup)

    pipeline.connect('source-setup', on_playbin_source_setup)

pipeline.set_state(Gst.State.PLAYING)
warnings = []
deadline = time.monotonic() + 60
while True:
    left = max(0.0, deadline - time.monotonic())
    msg = pipeline.get_bus().timed_pop_filtered(
        int(left * Gst.SECOND),
        Gst.MessageType.EOS | Gst.MessageType.ERROR | Gst.MessageType.WARNING)
    if msg is None or msg.type != Gst.MessageType.WARNING:
        break
    warnings.append(msg.parse_warning()[0].message)
    print('WARNING: %s' % warnings[-1])
for text in args.expect_warning:
    check(any(text in warning for warning in warnings), 'no warning says %r' % text)
if msg is None:
    check(False, 'neither EOS nor an error within 60 s')
elif msg.type == Gst.MessageType.EOS:
    print('EOS')
    print('received %d bytes' % received[0])
    check(not args.expect_error, 'EOS, expected the error %s' % args.expect_error)
else:
    error, debug = msg.parse_error()
    details = msg.parse_error_details()
    print('ERROR: %s' % error.message)
    print('debug: %s' % debug)
    print('details: %s' % (details.to_string() if details else None))
    if check(args.expect_error, 'error: %s' % error.message):
        domain, _, code = args.expect_error.partition(':')
        enum = {'core': Gst.CoreError, 'resource': Gst.ResourceError,
                'stream': Gst.StreamError}[domain]
        check(error.matches(enum.quark(), getattr(enum, code)),
              'the error is %s %d, expected %s' % (error.domain, error.code, args.expect_error))
        task_id = details.get_string('task-id') if details else None
        check(task_id and task_id in error.message, 'the error names no task')
        if args.expect_status is not None:
            status = details.get_uint('http-status')[1] if details else 0
            check(status == args.expect_status,
                  'http-status %d, expected %d' % (status, args.expect_status))
        for text in args.expect_text:
            check(text in error.message, 'the message does not say %r' % text)
pipeline.set_state(Gst.State.NULL)

print('source-setup configured: %s' % ' '.join(sources))
check(sources, 'the handler never ran')
check(all(name == 'souphttpsrc' for name in sources), 'not souphttpsrc: %s' % sources)
for why in failures:
    print('FAIL: %s' % why, file=sys.stderr)
sys.exit(1 if failures else 0)
