import pytest
import torch.nn as nn

from seg_bench.errors import UserError
from seg_bench.registry import Registry


def test_register_create_and_describe():
    reg = Registry("widget")

    @reg.register("double", "doubles its input")
    def double(x=1):
        return 2 * x

    assert reg.create("double", x=4) == 8
    assert reg.describe("double") == "doubles its input"
    assert "double" in reg and "triple" not in reg
    assert reg.names() == ["double"]


def test_description_defaults_to_docstring_first_line():
    reg = Registry("widget")

    @reg.register("thing")
    def thing():
        """First line.

        More text."""

    assert reg.describe("thing") == "First line."


def test_a_name_taken_by_another_function_is_refused_and_bare_use_registers():
    # A plug-in registering "unet" silently replaced the built-in (or was replaced by it).
    reg = Registry("model")

    @reg.register
    def unet():
        return "built-in"

    def mine():
        return "plug-in"

    with pytest.raises(UserError, match=r"model 'unet' is registered twice: by .*unet and by"):
        reg.register("unet")(mine)
    assert reg.create("unet") == "built-in"
    reg.register("unet")(unet)  # the same function again (a module imported twice): fine


def test_unknown_name_lists_registered_and_suggests():
    reg = Registry("model")
    reg.register("unet")(lambda: None)
    reg.register("resunet")(lambda: None)
    with pytest.raises(UserError) as e:
        reg.create("unte")
    msg = str(e.value)
    assert "unknown model 'unte'" in msg and "Did you mean 'unet'" in msg and "resunet" in msg


def test_family_names_resolve_through_the_factory():
    reg = Registry("model")
    reg.register_family(
        "fam-", lambda name, **kw: name.upper(), "a family", ["fam-a"], lambda n: n != "fam-bad"
    )
    assert reg.create("fam-x") == "FAM-X"
    assert "fam-x" in reg and "fam-bad" not in reg
    with pytest.raises(UserError, match="fam-<...>"):
        reg.create("fam-bad")


def test_entry_point_plugins_are_loaded(monkeypatch):
    import seg_bench.registry as registry

    class FakeEP:
        name, value, dist = "plugged", "fake_module:plugged", None  # as importlib.metadata's

        def load(self):
            return lambda in_channels=1, classes=1, width=1.0: nn.Conv2d(in_channels, classes, 1)

    monkeypatch.setattr(registry, "entry_points", lambda group: [FakeEP()] if group == "g" else [])
    reg = Registry("model", entry_point_group="g")
    assert "plugged" in reg
    assert isinstance(reg.create("plugged", in_channels=2), nn.Conv2d)
