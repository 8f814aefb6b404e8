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
LEARNING_RATES = {"adam": 1e-3, "sgd": 1e-2, "rmsprop": 1e-3}
OPTIMIZERS = tuple(LEARNING_RATES)
APIS = ("sequential", "functional", "subclassed")

SHAPES_COUNT = 3000  # images the `shapes` generator draws by default (500 per class)
