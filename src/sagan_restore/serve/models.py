"""The models a `serve` page offers, and the enhancers loaded for them."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from starlette.exceptions import HTTPException

from sagan_restore.config import ServeConfig
from sagan_restore.errors import UserError
from sagan_restore.infer.enhance import Enhancer
from sagan_restore.models import zoo
from sagan_restore.serve.uploads import safe_stem

LOADED_MODELS = 4  # enhancers kept loaded (one per model, realism and strength value asked for)


@dataclass(frozen=True)
class ModelChoice:
    name: str  # shown on the page and sent back by it
    spec: str  # what Enhancer.load takes: a pretrained name or a path given to --model
    summary: str
    scale: int
    has_realism: bool  # the model blends fidelity and GAN weights; the page shows a slider
    default_realism: float | None
    has_strength: bool = False  # the model blends with its light variant (--strength 0..1); a second slider


class Models:
    """The models offered on the page, and the enhancers loaded for them, the most recently used kept."""

    def __init__(self, cfg: ServeConfig):
        self._cfg = cfg
        self._loaded: OrderedDict[tuple[str, float | None, float], Enhancer] = OrderedDict()
        self.choices: dict[str, ModelChoice] = {}
        self._resolved: dict[str, zoo.ResolvedModel] = {}
        for name, resolved, summary in offered(cfg.models):
            spec = resolved.spec
            if name in self.choices:
                raise UserError(f"--model {spec}: another model is already called {name} on the page; "
                                "give the files different names")
            self._resolved[spec] = resolved
            has_realism = resolved.realism_path is not None
            default_realism = resolved.default_realism if has_realism else None
            scale = self.enhancer(spec, default_realism).scale
            self.choices[name] = ModelChoice(name, spec, summary, scale, has_realism, default_realism,
                                             has_strength=resolved.strength_path is not None)

    def enhancer(self, spec: str, realism: float | None, strength: float = 1.0) -> Enhancer:
        key = (spec, realism, strength)
        if key not in self._loaded:
            self._loaded[key] = Enhancer.load(self._resolved.get(spec, spec), device=self._cfg.device,
                                              tile=self._cfg.tile, realism=realism, strength=strength)
            while len(self._loaded) > LOADED_MODELS:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(key)
        return self._loaded[key]

    def choice(self, name: str) -> ModelChoice:
        if name not in self.choices:
            raise HTTPException(400, f"unknown model {name!r}; this server offers {', '.join(self.choices)}")
        return self.choices[name]


def offered(specs: tuple[str, ...]) -> list[tuple[str, zoo.ResolvedModel, str]]:
    """(name, resolved model, summary) of each model to offer."""
    if not specs:
        shipped = zoo.shipped()
        if not shipped:
            raise UserError("no pretrained models are shipped in this installation; pass --model with a run "
                            "folder or a .safetensors file")
        return [(m.name, zoo.resolve(m.name), m.summary) for m in shipped]
    offered = []
    for spec in specs:
        resolved = zoo.resolve(spec)
        if resolved.pretrained is not None:
            offered.append((resolved.pretrained.name, resolved, resolved.pretrained.summary))
        else:
            path = resolved.path
            offered.append((safe_stem(path.name if path.is_dir() else path.stem), resolved, f"model from {spec}"))
    return offered


def parse_strength(text: str | None, choice: ModelChoice) -> float:
    """The page's strength for a model with a light variant; 1 (the model itself) for the others."""
    if not choice.has_strength or text is None:
        return 1.0
    return slider_value(text, "strength", "0 (keeps the grain) to 1 (full)")


def parse_realism(text: str | None, choice: ModelChoice) -> float | None:
    if not choice.has_realism:
        return None
    if text is None:
        return choice.default_realism
    return slider_value(text, "realism", "0 (fidelity) to 1 (realism)")


def slider_value(text: str, name: str, ends: str) -> float:
    """A value of one of the page's 0..1 sliders, or a 400 naming it."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise HTTPException(400, f"{name} {text!r}: expected a number from {ends}")
    return round(value, 2)  # the sliders step by 0.05; finer values would only load more models
