#include "include/clinux.h"
