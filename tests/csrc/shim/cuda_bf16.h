// Host shim for <cuda_bf16.h>: everything lives in the shim cuda_runtime.h.
#pragma once

#include "cuda_runtime.h"
