"""Data sets on disk: listing them into train/test records, and loading images and masks as tensors.

Three layouts with pixel masks, and four one-class ones (``oneclass``; see docs/data.md for the trees):

* ``mvtec``: MVTec AD, ``ROOT/<category>/{train,test,ground_truth}``; the split is the data set's own.
* ``mtd``: Magnetic Tile Defect, ``ROOT/MT_<class>/Imgs/<name>.jpg`` + ``<name>.png`` masks; a seeded
  split of the defect-free images (``MT_Free``) into train/test, every defective image in test.
* ``folder``: a user's own data, ``ROOT/good`` + one folder per defect type, optional masks in
  ``ROOT/ground_truth``; split like ``mtd`` (or the user's own ``ROOT/train`` + ``ROOT/test``).

Listing never opens an image; corrupt files are reported when loaded. Every problem with the user's
files is a one-line :class:`CavgaError` naming the file or folder.

The package, one concern per module: ``records`` (Record, Split, constants), ``listing`` (folder
listing shared by the layouts), ``layouts`` (the three layouts and ``load_split``), ``protocol``
(CAVGA-w/-u splits, held-out normals), ``oneclass`` (MNIST, Fashion-MNIST, CIFAR-10, digits: Table 7's
protocol), ``arrays`` (images inside one array file, ``FILE#INDEX``), ``images`` (decoding images and
masks), ``geometry`` (where an image sits in the square input: stretched or padded), ``dataset``
(Sample, Batch, ImageDataset, make_loader), ``augment`` (train.augment's flips and turns). The names
below are the public interface; import them from here.
"""

from .augment import augment_batch, epoch_generator, square_symmetry
from .dataset import Batch, ImageDataset, Sample, collate, make_loader
from .geometry import cell_weights, content_box, crop, from_canvas, paste_padding, to_canvas, valid_mask
from .images import image_size_of, load_image, load_mask, mask_defect, read_image, verify_images, verify_masks
from .layouts import folder_split, load_split, mtd_split, mvtec_split
from .listing import BROKEN_LINK, is_hidden
from .oneclass import ONE_CLASS_LAYOUTS, one_class_split
from .protocol import drop_weak_anomalies_from_test, hold_out_normals, move_anomalous_to_train, why_none_held_out
from .records import GOOD, IMAGE_EXTENSIONS, MASK_FOLDERS, MVTEC_CATEGORIES, Record, Split

__all__ = [
    "BROKEN_LINK",
    "GOOD",
    "IMAGE_EXTENSIONS",
    "MASK_FOLDERS",
    "MVTEC_CATEGORIES",
    "ONE_CLASS_LAYOUTS",
    "Batch",
    "ImageDataset",
    "Record",
    "Sample",
    "Split",
    "augment_batch",
    "cell_weights",
    "collate",
    "content_box",
    "crop",
    "drop_weak_anomalies_from_test",
    "epoch_generator",
    "folder_split",
    "from_canvas",
    "hold_out_normals",
    "image_size_of",
    "is_hidden",
    "load_image",
    "load_mask",
    "load_split",
    "make_loader",
    "mask_defect",
    "move_anomalous_to_train",
    "mtd_split",
    "mvtec_split",
    "one_class_split",
    "paste_padding",
    "read_image",
    "square_symmetry",
    "to_canvas",
    "valid_mask",
    "verify_images",
    "verify_masks",
    "why_none_held_out",
]
