/*
 * log.h -- one line per event on stderr: "2026-11-23T10:00:00.123Z level msg".
 * Thread-safe (one fprintf per line, stdio locks the stream).
 */
#pragma once

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Lines below min are dropped. Set once at start, before threads. */
void log_set_level(log_level min);

/* 0: "TIME level msg" text lines; 1: one JSON object per line,
 * {"ts": ..., "level": ..., "msg": ...}. Set once at start, before threads. */
void log_set_format(int json);

__attribute__((format(printf, 2, 3))) void log_msg(log_level lvl, const char *fmt, ...);
