#include <libmilter/mfapi.h>
