// The scan running on this thread, for libclamav's message callback: libclamav passes the scan's
// context with the messages of a scan, but not with those it logs before it set the scan up (such as
// "Can't create temporary directory for scan", after which it reports the message clean).
#include "clamav_prefault.h"

static __thread void *current_scan;

void bw_scan_context_set(void *context) { current_scan = context; }

void *bw_scan_context_get(void) { return current_scan; }
