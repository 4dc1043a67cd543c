"""Data: the architecture-graph dataset and image datasets."""

from .archgraph_dataset import ArchGraphDataset, sample_specs, split_seed
from .images import (IMAGE_DATASETS, ImageSet, find_fashion_mnist, image_loaders, image_tensors,
                     load_images, synthetic_images, tensor_batches)

__all__ = ["ArchGraphDataset", "sample_specs", "split_seed", "ImageSet", "load_images",
           "image_loaders", "image_tensors", "tensor_batches", "synthetic_images",
           "find_fashion_mnist", "IMAGE_DATASETS"]
