"""Type stubs of the native module (Rust, PyO3): use the classes of ``metric_loss``."""

from os import PathLike
from typing import List, Optional, Tuple, Union

import numpy as np

class NativeLoss:
    @staticmethod
    def from_json(text: str) -> NativeLoss: ...
    @staticmethod
    def load(path: Union[str, PathLike[str]]) -> NativeLoss: ...
    def config_json(self) -> str: ...
    @property
    def name(self) -> str: ...
    def reset_state(self) -> None: ...
    def compute(
        self,
        labels: np.ndarray,
        embeddings: np.ndarray,
        sample_weight: Union[None, float, np.ndarray] = None,
        keys: Optional[np.ndarray] = None,
        key_labels: Optional[np.ndarray] = None,
        remove_diagonal: bool = True,
        gradient: bool = True,
    ) -> Tuple[float, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]: ...
    def compute_views(
        self,
        view_a: np.ndarray,
        view_b: np.ndarray,
        sample_weight: Union[None, float, np.ndarray] = None,
        gradient: bool = True,
    ) -> Tuple[float, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]: ...

def registered_names() -> List[str]: ...
