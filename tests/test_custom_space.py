"""The worked example of docs/search_spaces.md: a new space in one file works end to end."""
import re
from pathlib import Path

import timm
import torch

from nas.measure.costs import arch_costs, count_params
from search_spaces import get_space
from supernet import Supernet

DOC = Path(__file__).resolve().parents[1] / "docs" / "search_spaces.md"


def test_worked_example_from_docs():
    code = re.search(r"```python\n# my_spaces/strip_then_attend.py\n(.*?)```", DOC.read_text(), re.S).group(1)
    exec(compile(code, "strip_then_attend.py", "exec"), {})
    space = get_space("strip_then_attend")
    arch = space.sample(0)
    net = Supernet(space, "proxy").eval()
    x = torch.randn(2, 3, 32, 32)
    sub = net.extract(arch).eval()
    with torch.no_grad():
        assert (net(x, arch) - sub(x)).abs().max() <= 1e-5
    model = timm.create_model("strip_then_attend", arch=arch, scale="proxy")
    assert count_params(model) == arch_costs(arch, space.proxy).params
    assert space.cardinality() > 1000
