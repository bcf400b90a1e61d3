// Turns a kernel launch's cudaError_t into an error that names the op.
#pragma once

#include <c10/util/Exception.h>
#include <cuda_runtime.h>

#define CHECK_CUDA_LAUNCH(op, err)                                                   \
  TORCH_CHECK((err) == cudaSuccess, op, ": the CUDA kernel launch failed: ",         \
              cudaGetErrorString(err), ".")
