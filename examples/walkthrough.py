# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A walk through namesae on the synthetic name world
#
# The synthetic world plants what the analyses look for: most full names ("First Last") are compositional (their
# embeddings are only their parts' attribute biases), a few are *dedicated* (they own a direction of their own).
# We write a small world, train a small SAE on its image rows, find the dedicated names, group one name's
# features, and steer it: zeroing its identity features should move it towards what its parts alone predict.
# It runs in well under a minute on two CPU cores. (`jupytext --to ipynb examples/walkthrough.py` rebuilds the
# notebook from this script.)

# %%
# %matplotlib inline
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import namesae as ns
from namesae.synth import compositional_prediction, load_world

OUT = Path("runs/walkthrough")

# %% [markdown]
# ## 1. A small world
# 80 names: 16 first names, 16 surnames and 48 full names, 8 of them dedicated. Each name has 16 image rows
# (8 scenario templates x 2 generations) in `image.h5`; `text.h5` holds the text rows and `vocab.h5` labelled
# phrases (`age:child`, `hair:red`, ...) to name features with.

# %%
paths = ns.synth(OUT / "world", n_first=16, n_last=16, n_full=48, n_dedicated=8, progression=False)
truth = json.loads(paths.truth.read_text())
planted = {r["name"] for r in truth["names"] if r["dedicated"]}
with ns.open_store(paths.image) as store:
    print(store)
print(f"{len(truth['names'])} names, {len(planted)} planted dedicated:", sorted(planted))

# %% [markdown]
# ## 2. A small SAE
# A JumpReLU SAE with 512 features (8 x the 64-d embeddings), 200 steps. The folder is in SAELens's format;
# `metrics.json` holds the held-out metrics, read back as a typed `SAEMetrics`.

# %%
sae = ns.train(paths.image, OUT / "sae", architecture="jumprelu", expansion_factor=8.0, l0_coefficient=0.005,
               batch_size=256, steps=200, lr=2e-3)
metrics = ns.SAEMetrics.load(OUT / "sae" / "metrics.json")
print(f"explained variance {metrics.explained_variance:.3f}, mean L0 {metrics.mean_l0:.1f}, "
      f"dead features {metrics.dead_fraction:.2f}")

# %% [markdown]
# ## 3. Which names own a feature?
# A name is dedicated when one feature fires on its rows and almost nowhere else (precision >= 0.8 among the
# feature's strongest firings, recall >= 0.5). `identity_features` are plain feature ids; the details sit beside
# them in `identity_feature_details`.

# %%
found = ns.identity(paths.image, sae, text_store=paths.text, vocab=paths.vocab, prior_names=paths.prior_names)
print(found)
detected = {r.name for r in found.dedicated()}
print(f"found {len(detected)}; {len(detected & planted)} of the {len(planted)} planted dedicated names")
record = next(r for r in found.dedicated() if r.name in planted)
print(record.name, record.identity_features, record.identity_feature_details[0])
found.frame()[["name", "dedicated", "dedication", "part_composition", "cos_mean"]].head()

# %%
frame = found.frame()
is_planted = frame["name"].isin(planted)
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist([frame.loc[~is_planted, "dedication"], frame.loc[is_planted, "dedication"]], bins=20,
        label=["compositional (planted)", "dedicated (planted)"], stacked=True)
ax.set_xlabel("dedication = max_j precision x recall")
ax.set_ylabel("names")
ax.legend()
plt.show()

# %% [markdown]
# Every result owns its file format: `save` writes a versioned file, `load` reads it back typed (and refuses a
# file of another format_version with one line naming the file and the field).

# %%
found.save(OUT / "identity.json")
again = ns.IdentityResult.load(OUT / "identity.json")
assert again.by_name()[record.name].identity_features == record.identity_features

# %% [markdown]
# ## 4. The groups of one name's features
# The name's mean code, split into groups of features whose decoder directions point the same way (one group
# per concept with `select="concepts"`), labelled from the vocabulary.

# %%
features = ns.features(paths.image, sae, vocab=paths.vocab)
groups = ns.groups(paths.image, sae, names=record.name, labels=features, select="concepts")
for i, g in enumerate(groups.names[record.name].grouping.groups, 1):
    print(f"group {i}: mass {g.mass_share:.2f}, label {g.label}, features {g.features[:6]}")

# %% [markdown]
# ## 5. Steering: zero the identity features
# x' = decode(f') + (x - decode(f)): the reconstruction error is kept, so only the edit moves x. Without its
# identity features, a dedicated name should sit closer to what its parts alone predict.

# %%
with ns.open_store(paths.image) as store:
    x = store.read_rows(store.rows_of(record.name))
moved = ns.steer(sae, x, [ns.ZeroGroup(record.identity_features)])
parts = compositional_prediction(load_world(paths.root), record.name)
own = x.mean(0) / np.linalg.norm(x.mean(0))


def mean_cos(rows: np.ndarray, target: np.ndarray) -> float:
    """Mean cosine of rows [m, d] to a unit target [d]."""
    return float((rows @ target / np.linalg.norm(rows, axis=1)).mean())


edited = moved.embeddings.numpy()
table = {"to its parts' prediction": (mean_cos(x, parts), mean_cos(edited, parts)),
         "to its own mean": (mean_cos(x, own), mean_cos(edited, own))}
for what, (before, after) in table.items():
    print(f"{record.name}: cosine {what} {before:.3f} -> {after:.3f}")
assert table["to its parts' prediction"][1] > table["to its parts' prediction"][0]

# %%
fig, ax = plt.subplots(figsize=(6, 3))
pos = np.arange(len(table))
ax.bar(pos - 0.2, [b for b, _ in table.values()], 0.4, label="original")
ax.bar(pos + 0.2, [a for _, a in table.values()], 0.4, label="identity features zeroed")
ax.set_xticks(pos, list(table))
ax.set_ylabel("mean cosine")
ax.set_title(record.name)
ax.legend()
plt.show()
