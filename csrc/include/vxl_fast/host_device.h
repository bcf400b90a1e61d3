// VXL_HOST_DEVICE marks helpers shared by the CPU impls (g++) and the CUDA kernels (nvcc).
#pragma once

#if defined(__CUDACC__)
#define VXL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define VXL_HOST_DEVICE inline
#endif
