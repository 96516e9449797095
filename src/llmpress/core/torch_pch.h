// The one precompiled header: libtorch's tensor API without the nn/optim front end.
#pragma once
#include <ATen/ATen.h>
#include <torch/types.h>
#include <string>
#include <vector>
#include <memory>
