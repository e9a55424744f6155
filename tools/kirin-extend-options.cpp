#include "kirin-extend-options.h"

#include <gst/gst.h>

namespace kirin_extend {

bool parse_options(int argc, char **argv, Options &options) {
  g_autofree char *api_url = nullptr, *prompt = nullptr, *task_id = nullptr;
  const GOptionEntry entries[] = {
      {"api-url", 0, 0, G_OPTION_ARG_STRING, &api_url,
       "The provider's create endpoint (default: $VTRIX_API_URL, else the provider's)", "URL"},
      {"prompt", 0, 0, G_OPTION_ARG_STRING, &prompt, "What the continuation should show", "TEXT"},
      {"poll-interval", 0, 0, G_OPTION_ARG_INT, &options.poll_interval_ms,
       "Milliseconds before the first poll (default 5000)", "MS"},
      {"timeout", 0, 0, G_OPTION_ARG_INT, &options.timeout_s,
       "Seconds to wait for the task, 0 = no limit (default 1200)", "S"},
      {"extensions", 0, 0, G_OPTION_ARG_INT, &options.extensions,
       "Extend this many times in a row, about 5 s each (default 1)", "N"},
      {"fresh", 0, 0, G_OPTION_ARG_NONE, &options.fresh,
       "Pay for a new task even when the journal holds one for this request (as after an "
       "earlier run whose create got no answer: exit status 6)",
       nullptr},
      {"task-id", 0, 0, G_OPTION_ARG_STRING, &task_id,
       "Resume this task instead of creating (and paying for) a new one; VIDEO_ID may then be "
       "left out",
       "ID"},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  g_autoptr(GOptionContext) context = g_option_context_new("VIDEO_ID OUTPUT.mp4");
  g_option_context_set_summary(context, "Extends a video by about 5 seconds with the Vtrix "
                                        "kirin_duration_extension model and saves the result.\n"
                                        "The API key is read from the environment variable "
                                        "VTRIX_API_KEY.");
  g_option_context_set_description(
      context, "Exit status:\n"
               "  0    the result is saved\n"
               "  1    another failure (no kirinextendsrc, the output cannot be written, ...)\n"
               "  2    a wrong command line, or VTRIX_API_KEY is not set\n"
               "  3    a setting is wrong (the message names it), such as an api-url\n"
               "       that is not the create endpoint; no task was created\n"
               "  4    the provider refused the task, or the task failed there\n"
               "  5    the wait ended first (a task's ID is printed: resume it), or the\n"
               "       provider could not be reached (no task was created: run again later)\n"
               "  6    the create got no task ID back (a server error, a lost answer, now\n"
               "       or in an earlier run): the task may exist; look it up by the external\n"
               "       task ID printed, then resume it with --task-id or pay anew with --fresh\n"
               "  130  interrupted (Ctrl-C); a created task goes on, and its ID is printed\n");
  g_option_context_add_main_entries(context, entries, nullptr);
  g_option_context_add_group(context, gst_init_get_option_group());
  g_autoptr(GError) error = nullptr;
  if (!g_option_context_parse(context, &argc, &argv, &error)) {
    g_printerr("kirin-extend: %s\n", error->message);
    return false;
  }
  if (api_url)
    options.api_url = api_url;
  if (prompt)
    options.prompt = prompt;
  if (task_id)
    options.task_id = task_id;

  const char *problem = nullptr;
  if (argc == 3) {
    options.video_id = argv[1];
    options.output = argv[2];
  } else if (argc == 2 && !options.task_id.empty()) {
    options.output = argv[1];
  } else {
    problem = "give VIDEO_ID and OUTPUT.mp4 (with --task-id, OUTPUT.mp4 is enough)";
  }
  if (!problem && options.poll_interval_ms != kUnset && options.poll_interval_ms < 1)
    problem = "--poll-interval must be positive";
  else if (!problem && options.timeout_s != kUnset && options.timeout_s < 0)
    problem = "--timeout cannot be negative";
  else if (!problem && (options.extensions < 1 || options.extensions > 36))
    problem = "--extensions must be from 1 to 36 (3 minutes in steps of 5 s)";
  if (problem) {
    g_printerr("kirin-extend: %s\nTry 'kirin-extend --help'.\n", problem);
    return false;
  }
  return true;
}

} // namespace kirin_extend
