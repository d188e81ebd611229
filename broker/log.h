/*
 * log.h: the one logging facility of the daemon.
 *
 * Lines go to stderr as "keybrokerd: LEVEL: message" (systemd's journal adds
 * time and pid). Debug lines also carry file:line. Never log a secret: DEKs,
 * PINs, client secrets and bearer tokens have no business in a message.
 */
#ifndef KB_LOG_H
#define KB_LOG_H

typedef enum kb_log_level {
	KB_LOG_ERROR = 0,
	KB_LOG_WARN,
	KB_LOG_INFO,
	KB_LOG_DEBUG,
} kb_log_level;

/* kb_log_set_level sets the most verbose level that is printed. */
void kb_log_set_level(kb_log_level level);

/* kb_log_parse_level maps "error".."debug" to a level; returns -1 if unknown. */
int kb_log_parse_level(const char *name);

void kb_log_at(kb_log_level level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* kb_log_err, not kb_error: that is libkeybroker's public error type (keybroker.h) */
#define kb_log_err(...) kb_log_at(KB_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define kb_warn(...) kb_log_at(KB_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define kb_info(...) kb_log_at(KB_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define kb_debug(...) kb_log_at(KB_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)

#endif
