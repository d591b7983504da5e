/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shoald's log: one line per event to stderr (the journal under systemd),
 * with the syslog level as a <N> prefix that journald understands. Say
 * what happened and why: "peer 1a2b..: banned for 10m: chunk ab12.. did
 * not match its id". */
#pragma once

#include <syslog.h>

#include "util.h"

void log_set_level(int level);
int log_get_level(void);
void log_msg(int level, const char *fmt, ...) _printf_(2, 3);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
