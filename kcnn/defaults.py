"""Every default setting in one place: the CLI, the library and the docs read them from here."""

EPOCHS = 10
BATCH_SIZE = 128
OPTIMIZER = "adam"
SEED = 83  # seed 003's seed, used for the split and for weight initialisation
VAL_SPLIT = 0.2  # seed 003's validation split
TEST_SPLIT = 0.2  # held out for data sets that ship without a test set
OUT_DIR = "runs"
API = "sequential"

# Learning rates each optimizer is commonly run with when --lr is not given.
LEARNING_RATES = {"adam": 1e-3, "adamw": 1e-3, "sgd": 1e-2, "rmsprop": 1e-3}
OPTIMIZERS = tuple(LEARNING_RATES)
APIS = ("sequential", "functional", "subclassed")

SHAPES_COUNT = 3000  # images the `shapes` generator draws by default (500 per class)
SHAPES_COUNT_MAX = 1_000_000  # 3 GB of 32×32×3 images: beyond that, generate a folder instead

# Bounds that keep a setting from asking for memory no machine has, checked before any work.
IMAGE_SIZE_MAX = 4096  # pixels per side of the model input
INPUT_BATCH_BYTES_MAX = 2 * 1024**3  # one float32 input batch (batch × H × W × C × 4 bytes)
# What one model may cost, estimated from its layer specs before Keras allocates anything
# (kcnn/models/geometry.py), so that a model kcnn agrees to build fits a 24 GB laptop:
# 10⁹ float32 weights are 4 GB, 16 GB while training with Adam (weights, gradients, two moments);
# one image's float32 layer outputs (the input included) at most 4 GiB — VGG16 at 224×224 is 0.06.
MODEL_PARAMS_MAX = 1_000_000_000
ACTIVATION_BYTES_MAX = 4 * 1024**3

# compare-apis: seed 003's experiment — simple-cnn three ways on CIFAR-10, Adam, batch 128,
# 20 epochs, validation split 0.2, seed 83 (the shared defaults above hold the last four).
COMPARE_ARCH = "simple-cnn"
COMPARE_DATASET = "cifar10"
COMPARE_EPOCHS = 20
# Largest max-abs output difference between forms holding the same weights that still counts as
# the same network: float32 rounding in a different op order stays far below it.
COMPARE_TOLERANCE = 1e-5

# inspect --robustness: a random corruption's accuracy is the mean of this many draws (--draws)
ROBUSTNESS_DRAWS = 5
MAX_ROBUSTNESS_DRAWS = 100

# transfer: seed 003's second experiment — a frozen ImageNet backbone with a small head on CIFAR-10.
TRANSFER_DATASET = "cifar10"
TRANSFER_WEIGHTS = "imagenet"
TRANSFER_HEAD = "seed"
TRANSFER_HEADS = ("seed", "gap")
GAP_DROPOUT = (
    0.2  # the gap head's dropout before the classifier, as in the Keras transfer-learning guide
)
FINE_TUNE_LR = 1e-5  # a low rate keeps the unfrozen ImageNet features from being wrecked
# Frozen-backbone features are cached up to this size (and half the free disk space); beyond it
# the backbone runs every epoch instead (VGG16's flattened 7×7×512 features at 224×224 are 98 KiB
# an image: 8 GB is about 85,000 images). Up to FEATURE_MEMORY_MAX_BYTES they are kept in memory,
# beyond it in an unnamed file in the run folder (kcnn/data/feature_store.py), so a big cache
# costs page cache the system can take back, not process memory.
FEATURE_CACHE_MAX_BYTES = 8 * 1024**3
# 64 MB: beyond that a cache held in the process would grow its memory with the number of images
# (MobileNetV2's features at 96×96 are 45 KB an image), where the file's pages sit in the page
# cache, as fast to read and given back under pressure: peak memory stays flat (issue 28).
FEATURE_MEMORY_MAX_BYTES = 64 * 1024**2

# --- data limits (kcnn/data): what a data set may cost before it is refused -----------------------
# One image in an image folder, in pixels: Pillow's decompression-bomb guard is set to this (a
# 8192×8192 image; a tiny PNG can claim 20000×20000 and would decode to over a gigabyte).
MAX_IMAGE_PIXELS = 8192 * 8192
# A data set's arrays are read into memory while they take at most this share of the memory the
# machine has available (checked from file headers before anything is read); beyond it an .npz
# saved uncompressed (np.savez) or a raw IDX file is memory-mapped from disk, and a compressed one
# is unpacked into a temporary file and mapped; CIFAR's pickles (184 MB) are always read whole.
DATA_MEMORY_SHARE = 0.5
# Image folders are never loaded whole: their files are decoded when a batch needs them
# (kcnn/data/files.py). Files whose header is unreadable, or which fail to decode while training,
# are skipped and recorded, up to this share of a folder's image files; past it the folder is
# refused, or the run stops (exit 2, resumable).
BAD_IMAGES_MAX_SHARE = 0.05
# --cache auto keeps a folder's decoded images in memory up to this size, else on disk in the
# cache folder ($KCNN_CACHE_DIR, else ~/.cache/kcnn) while they fit half its free space (read with
# pread, the disk cache's pages are the system's page cache, not the process's memory).
IMAGE_CACHE_MEMORY_MAX_BYTES = 64 * 1024**2
# --cache: where decoded images are kept (kcnn/data/image_cache.py says what each means).
IMAGE_CACHE_CHOICES = ("auto", "memory", "disk", "none")
# Classes of one data set (class folders or distinct labels); more is a mistake, not a data set.
MAX_CLASSES = 10_000
