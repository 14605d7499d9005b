// Everything is in include/cmalloc.h; a C target needs one source file.
#include "cmalloc.h"
