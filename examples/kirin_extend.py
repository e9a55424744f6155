#!/usr/bin/python3
"""Extend a video with kirinextendsrc and save the result, showing progress.

    kirin_extend.py [--api-url URL] [--prompt TEXT] [--poll-interval MS]
                    [--timeout S] [--extensions N] [--fresh] [--task-id ID]
                    VIDEO_ID OUTPUT.mp4

The API key comes from VTRIX_API_KEY only: a key on the command line is
visible to every user of the machine (ps). The pipeline is
`kirinextendsrc ! filesink`; everything shown comes from the bus (the
`kirin-task` element messages, errors and their details).

Needs PyGObject and GStreamer's introspection data (Debian: python3-gi and
gir1.2-gstreamer-1.0, which serve the system's /usr/bin/python3).
"""

import argparse
import os
import shlex
import signal
import sys
import time

try:
    import gi

    gi.require_version('Gst', '1.0')
    from gi.repository import GLib, Gst
except (ImportError, ValueError) as missing:
    sys.exit('kirin_extend.py: %s\nThis needs PyGObject and GStreamer\'s '
             'introspection data for %s (Debian: apt-get install python3-gi '
             'gir1.2-gstreamer-1.0, for /usr/bin/python3).'
             % (missing, sys.executable))

# The exit statuses of kirin-extend (tools/kirin-extend.1), which a script can tell apart.
EXIT_FAILED = 1        # anything else: no plugin, the output cannot be written...
EXIT_USAGE = 2         # the command line, or no VTRIX_API_KEY
EXIT_SETTINGS = 3      # the element refused its settings (the message names which)
EXIT_PROVIDER = 4      # the provider refused the task, or the task failed there
EXIT_TIMEOUT = 5       # the wait ended first (the task ID is printed, to resume),
#                        or the provider could not be reached
EXIT_ANSWER_LOST = 6   # no task ID for a create that left: the task may exist
EXIT_INTERRUPTED = 130  # what shells report for a command ended by SIGINT

# The element's `error-kind` (docs/user-guide.md, "Errors") for each exit status.
EXIT_BY_KIND = {
    'settings': EXIT_SETTINGS, 'timeout': EXIT_TIMEOUT, 'network': EXIT_TIMEOUT,
    'ambiguous': EXIT_ANSWER_LOST, 'abandoned': EXIT_ANSWER_LOST,
    'unauthorized': EXIT_PROVIDER, 'forbidden': EXIT_PROVIDER, 'rejected': EXIT_PROVIDER,
    'not-found': EXIT_PROVIDER, 'task-failed': EXIT_PROVIDER, 'bad-response': EXIT_PROVIDER,
}
REDRAW_MS = 250
BAR_WIDTH = 24


def cost_text(completed):
    """What this run paid: a task attached to or replayed was paid for when it
    was created, and counting it again would report money not spent."""
    paid = [task for task in completed if task['paid_now']]
    earlier = ', '.join(task['task_id'] for task in completed
                        if not task['paid_now'])
    costs = ' + '.join('$' + task['cost'] for task in paid)
    if len(paid) > 1:
        costs += ' = $%.2f' % sum(float(task['cost'] or 0) for task in paid)
    if not earlier:
        return costs + ' (USD)'
    note = ('paid for when it was created, not by this run (%s)' % earlier)
    return costs + ' (USD); ' + note if paid else 'nothing now: ' + note


def clock_text(seconds):
    total = int(seconds + 0.5)
    if total >= 3600:
        return '%d:%02d:%02d' % (total // 3600, total // 60 % 60, total % 60)
    return '%d:%02d' % (total // 60, total % 60)


def megabytes(count):
    return '%.1f MB' % (count / 1e6)


class RemainingTime:
    """Seconds left for a fraction that grows over time.

    From the rate between the first and the latest sample since the last
    reset; None until the fraction has grown.
    """

    def __init__(self):
        self.samples = []

    def reset(self):
        self.samples = []

    def add(self, now, fraction):
        self.samples = self.samples[:1] + [(now, fraction)]

    def seconds(self, now):
        if len(self.samples) < 2:
            return None
        (first_t, first_f), (last_t, last_f) = self.samples
        if last_f <= first_f or last_t <= first_t:
            return None
        rate = (last_f - first_f) / (last_t - first_t)
        # Counts down between samples, which arrive only once per poll.
        return max(0.0, (1.0 - last_f) / rate - (now - last_t))


class Extension:
    def __init__(self, options):
        self.options = options
        # filesink writes here; renamed to the output once complete, so a
        # file under the output name is always a whole result.
        self.partial_path = options.output + '.part'
        self.terminal = sys.stdout.isatty()
        self.line_open = False
        self.started = time.monotonic()
        self.task_id = ''
        self.status = 'starting'
        self.step = 1
        self.progress = None
        self.remaining = RemainingTime()
        self.downloading = False
        self.last_logged = None
        self.completed = []
        self.last_task_failed = False
        self.succeeded = False
        self.interrupted = False
        self.failure = EXIT_FAILED  # the exit status when it did not succeed
        self.loop = GLib.MainLoop()

        self.source = Gst.ElementFactory.make('kirinextendsrc', 'extend')
        if self.source is None:
            raise RuntimeError(
                'GStreamer has no element kirinextendsrc: set GST_PLUGIN_PATH '
                'to the directory of libgstkirin.so (build/gst/kirin in the '
                'build tree)')
        self.sink = Gst.ElementFactory.make('filesink', 'save')
        if options.api_url:
            self.source.set_property('api-url', options.api_url)
        if options.video_id:
            self.source.set_property('video-id', options.video_id)
        if options.prompt:
            self.source.set_property('prompt', options.prompt)
        if options.task_id:
            self.source.set_property('task-id', options.task_id)
        if options.poll_interval is not None:
            self.source.set_property('poll-interval', options.poll_interval)
        if options.timeout is not None:
            self.source.set_property('timeout', options.timeout)
        if options.extensions > 1:
            self.source.set_property('extensions', options.extensions)
        if options.fresh:
            self.source.set_property('fresh', True)
        self.sink.set_property('location', self.partial_path)

        self.pipeline = Gst.Pipeline.new('kirin-extend')
        self.pipeline.add(self.source)
        self.pipeline.add(self.sink)
        self.source.link(self.sink)

    def elapsed(self):
        return time.monotonic() - self.started

    def end_line(self):
        """End a redrawn progress line, so the next output has its own."""
        if self.line_open:
            print(flush=True)
            self.line_open = False

    def download_position(self):
        """Bytes written by filesink and the size the HTTP source reported."""
        peer = self.sink.get_static_pad('sink').get_peer()
        if peer is None:
            return None
        known, total = peer.query_duration(Gst.Format.BYTES)
        ok, written = self.sink.query_position(Gst.Format.BYTES)
        if not known or total <= 0:
            return None
        return (written if ok else 0), total

    def show_progress(self):
        now = self.elapsed()
        status = 'downloading' if self.downloading else self.status
        if self.options.extensions > 1:
            status = 'step %d/%d %s' % (self.step, self.options.extensions,
                                        status)
        fraction = None if self.downloading else self.progress
        sizes = ''
        if self.downloading and self.terminal:
            position = self.download_position()
            if position:
                written, total = position
                fraction = written / total
                sizes = '  %s of %s' % (megabytes(written), megabytes(total))
        percent = ('?%' if fraction is None
                   else '%d%%' % int(fraction * 100 + 0.5))
        left = None if self.downloading else self.remaining.seconds(now)
        left_text = '?' if left is None else clock_text(left)

        if not self.terminal:
            # One line per change of status or whole percent.
            state = status if fraction is None else '%s %s' % (status, percent)
            if state != self.last_logged:
                self.last_logged = state
                times = '' if fraction is None else ', %s left' % left_text
                print('[%s] %s%s' % (clock_text(now), state, times),
                      flush=True)
            return
        filled = 0 if fraction is None else int(fraction * BAR_WIDTH + 0.5)
        bar = '#' * filled + '-' * (BAR_WIDTH - filled)
        # \r returns to the start of the line; \033[K clears what a longer
        # earlier line left.
        sys.stdout.write('\r%-20s [%s] %4s  %s elapsed, %s left%s\033[K' % (
            status, bar, percent, clock_text(now), left_text, sizes))
        sys.stdout.flush()
        self.line_open = True

    def redraw(self):
        self.show_progress()
        return GLib.SOURCE_CONTINUE

    def resume_command(self, task_id):
        """The command that continues where this run stopped, to paste."""
        words = ['kirin_extend.py', '--task-id', task_id]
        if self.options.api_url:
            words += ['--api-url', self.options.api_url]
        steps_left = self.options.extensions - self.step + 1
        if steps_left > 1:
            words += ['--extensions', str(steps_left)]
        return ' '.join(shlex.quote(word)
                        for word in words + [self.options.output])

    def external_task_id(self):
        """How the provider knows a task whose ID it has not told us yet."""
        return self.source.get_property('external-task-id') or ''

    def may_have_created(self, error, http_status):
        """Whether a failure without a task ID may still have made one.

        That is a create request that ended in a network failure or a 5xx
        after it was sent; a 4xx answer means the provider refused it.
        """
        ambiguous = (error.matches(Gst.ResourceError.quark(),
                                   Gst.ResourceError.FAILED)
                     and (http_status == 0 or http_status >= 500))
        return ambiguous and bool(self.external_task_id())

    def on_task_message(self, s):
        task_id = s.get_string('task-id') or ''
        status = s.get_string('status') or ''
        has_step, step = s.get_uint('step')
        step = step if has_step else 1
        has_progress, progress = s.get_double('progress')
        progress = progress if has_progress else None

        if task_id and task_id != self.task_id:
            self.task_id = task_id
            self.end_line()
            which = (' for step %d of %d' % (step, self.options.extensions)
                     if self.options.extensions > 1 else '')
            # Attached by --task-id, the element does not know the external
            # ID: say nothing then.
            external = s.get_string('external-task-id') or ''
            print('Task %s%s%s' % (
                task_id, which,
                ' (external ID %s)' % external if external else ''), flush=True)
        if status != self.status or step != self.step:
            self.remaining.reset()  # a new phase moves at its own pace
        self.status = status
        self.step = step
        self.progress = progress
        if status == 'processing' and progress is not None:
            self.remaining.add(self.elapsed(), progress)
        self.last_task_failed = status == 'failed'

        if status == 'completed':
            has_duration, duration = s.get_double('duration')
            self.completed.append({
                'task_id': task_id,
                'video_id': s.get_string('video-id') or '',
                'cost': s.get_string('cost') or '',
                'duration': duration if has_duration else -1,
                # A replayed task, or the one --task-id attaches to (step 1),
                # was paid for earlier.
                'paid_now': not s.get_boolean('replayed')[1] and
                not (step == 1 and self.options.task_id),
            })
            # After the last step the element downloads; earlier ones chain.
            self.downloading = step >= self.options.extensions
        self.show_progress()

    def on_error(self, message):
        error, _debug = message.parse_error()
        details = message.parse_error_details()
        task_id, code, http_status = self.task_id, '', 0
        kind = 'settings' if error.matches(Gst.ResourceError.quark(),
                                           Gst.ResourceError.SETTINGS) else ''
        if details is not None:
            task_id = details.get_string('task-id') or task_id
            code = details.get_string('kirin-error-code') or ''
        if code in error.message:
            code = ''  # the message says it already ("failed (error CODE: text)")
            http_status = details.get_uint('http-status')[1]
            kind = details.get_string('error-kind') or kind
        self.failure = EXIT_BY_KIND.get(kind, EXIT_FAILED)

        self.end_line()
        err = sys.stderr
        print('kirin_extend.py: %s' % error.message, file=err)
        said = (['HTTP status %d' % http_status] if http_status else []) + \
            (['error code ' + code] if code else [])
        if said:
            print('  (%s)' % ', '.join(said), file=err)
        if task_id:
            print('Task ID: %s' % task_id, file=err)
            if self.last_task_failed:
                print('The task failed at the provider; running again creates '
                      '(and pays for) a new task.', file=err)
            else:
                print('Resume without paying again: %s'
                      % self.resume_command(task_id), file=err)
        elif kind == 'abandoned':
            print('If the provider has no such task, run again with --fresh '
                  'to pay for a new one.', file=err)
        elif self.may_have_created(error, http_status):
            print('No task ID was received. If the task was created, the '
                  'provider knows it by the external task ID %s.'
                  % self.external_task_id(), file=err)

    def on_bus_message(self, _bus, message):
        kind = message.type
        if kind == Gst.MessageType.ELEMENT:
            s = message.get_structure()
            if (message.src == self.source and s is not None
                    and s.get_name() == 'kirin-task'):
                self.on_task_message(s)
        elif kind == Gst.MessageType.WARNING:
            # For example a chain that stopped before passing 3 minutes.
            warning, _debug = message.parse_warning()
            self.end_line()
            print('kirin_extend.py: warning: %s' % warning.message,
                  file=sys.stderr)
        elif kind == Gst.MessageType.ERROR:
            self.on_error(message)
            self.loop.quit()
        elif kind == Gst.MessageType.EOS:
            self.succeeded = True
            self.loop.quit()
        return True

    def on_interrupt(self):
        self.interrupted = True
        self.loop.quit()
        return GLib.SOURCE_CONTINUE

    def print_summary(self):
        if not self.completed:
            return
        last = self.completed[-1]
        tasks = ', '.join(task['task_id'] for task in self.completed)
        size = os.path.getsize(self.options.output)
        print('Done in %s.' % clock_text(self.elapsed()))
        print('Task:   %s' % tasks)
        print('Video:  %s, %.1f s (its ID can be extended again)'
              % (last['video_id'], last['duration']))
        print('Cost:   %s' % cost_text(self.completed))
        print('Saved:  %s (%d bytes)' % (self.options.output, size),
              flush=True)

    def run(self):
        bus = self.pipeline.get_bus()
        bus.add_watch(GLib.PRIORITY_DEFAULT, self.on_bus_message)
        handlers = [GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, number,
                                         self.on_interrupt)
                    for number in (signal.SIGINT, signal.SIGTERM)]
        # Elapsed and remaining time move on between the provider's answers.
        redraw = (GLib.timeout_add(REDRAW_MS, self.redraw)
                  if self.terminal else None)

        self.show_progress()
        # A failure here (bad settings, an unwritable output) is explained by
        # the error it posted on the bus, which the loop then reports.
        self.pipeline.set_state(Gst.State.PLAYING)
        self.loop.run()

        if redraw:
            GLib.source_remove(redraw)
        for handler in handlers:
            GLib.source_remove(handler)
        # Never waits on the network: the element cancels and lets go.
        self.pipeline.set_state(Gst.State.NULL)
        bus.remove_watch()

        status = 0
        if self.succeeded:
            try:
                os.replace(self.partial_path, self.options.output)
            except OSError as error:
                print('kirin_extend.py: cannot rename %s to %s: %s'
                      % (self.partial_path, self.options.output, error),
                      file=sys.stderr)
                self.succeeded = False
        if self.succeeded:
            self.end_line()
            self.print_summary()
        else:
            try:
                os.unlink(self.partial_path)
            except FileNotFoundError:
                pass
            status = self.failure
        if self.interrupted:
            self.end_line()
            status = EXIT_INTERRUPTED
            if self.task_id:
                print('Interrupted. Task %s goes on at the provider: resume '
                      'it without paying again with\n  %s'
                      % (self.task_id, self.resume_command(self.task_id)),
                      file=sys.stderr)
            elif self.external_task_id():
                print('Interrupted before the provider named the task. If it '
                      'was created, it is known by the external task ID %s.'
                      % self.external_task_id(), file=sys.stderr)
            else:
                print('Interrupted before any task was created.',
                      file=sys.stderr)
        return status


def parse_options(argv):
    parser = argparse.ArgumentParser(
        description='Extend a video by about 5 seconds with the Vtrix '
                    'kirin_duration_extension model and save the result. '
                    'The API key is read from the environment variable '
                    'VTRIX_API_KEY.')
    parser.add_argument('--api-url', help="the provider's create endpoint "
                        "(default: $VTRIX_API_URL, else the provider's)")
    parser.add_argument('--prompt', help='what the continuation should show')
    parser.add_argument('--poll-interval', type=int, metavar='MS',
                        help='milliseconds before the first poll '
                             '(default 5000)')
    parser.add_argument('--timeout', type=int, metavar='S',
                        help='seconds to wait for the task, 0 = no limit '
                             '(default 1200)')
    parser.add_argument('--extensions', type=int, default=1, metavar='N',
                        help='extend this many times in a row, about 5 s '
                             'each (default 1)')
    parser.add_argument('--fresh', action='store_true',
                        help='pay for a new task even when the journal holds '
                             'one for this request (as after an earlier run '
                             'whose create got no task ID back: exit status 6)')
    parser.add_argument('--task-id', metavar='ID',
                        help='resume this task instead of creating (and '
                             'paying for) a new one; VIDEO_ID may then be '
                             'left out')
    parser.add_argument('video_id', nargs='?', metavar='VIDEO_ID',
                        help='the provider-generated video to extend')
    parser.add_argument('output', metavar='OUTPUT.mp4',
                        help='where to save the extended video')
    options = parser.parse_args(argv)

    if options.video_id is None and not options.task_id:
        parser.error('give VIDEO_ID and OUTPUT.mp4 (with --task-id, '
                     'OUTPUT.mp4 is enough)')
    if options.poll_interval is not None and options.poll_interval < 1:
        parser.error('--poll-interval must be positive')
    if options.timeout is not None and options.timeout < 0:
        parser.error('--timeout cannot be negative')
    if not 1 <= options.extensions <= 36:
        parser.error('--extensions must be from 1 to 36 (3 minutes in steps '
                     'of 5 s)')
    return options


def main(argv):
    options = parse_options(argv)
    if not os.environ.get('VTRIX_API_KEY'):
        print('kirin_extend.py: set the environment variable VTRIX_API_KEY '
              'to your API key', file=sys.stderr)
        return EXIT_USAGE
    Gst.init(None)
    try:
        extension = Extension(options)
    except RuntimeError as error:
        print('kirin_extend.py: %s' % error, file=sys.stderr)
        return EXIT_FAILED
    return extension.run()


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
