"""Data: the architecture-graph dataset and image datasets."""

from .archgraph_dataset import (ArchGraphDataset, sample_specs, split_seed, split_arch_name,
                                split_models)
from .mixture import ArchMixture
from .images import (IMAGE_DATASETS, ImageSet, find_fashion_mnist, first_items, image_loaders,
                     image_tensors, load_images, synthetic_images, tensor_batches)

__all__ = ["ArchGraphDataset", "ArchMixture", "sample_specs", "split_seed", "split_arch_name", "split_models",
           "ImageSet", "load_images", "image_loaders", "image_tensors", "tensor_batches",
           "first_items", "synthetic_images", "find_fashion_mnist", "IMAGE_DATASETS"]
