"""The demo shop's catalogue: items in categories, consumables with a cycle, durables.

Item choice is two-level and fixed in time for consumables: a purchase or view draws a
category from the customer's interests, then "consumable or durable" with the category's
fixed consumable share, then an item by popularity inside that pool. Only durables are
ever inactive (discontinued on :attr:`Catalogue.discontinue_day`), so the probability of
drawing a given consumable never changes — the oracle relies on that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import contract as c

# category: (consumable share, cycle range (days), median price (EUR),
#            consumable nouns, durable nouns)
CATEGORIES: dict[str, tuple[float, tuple[int, int], float, tuple[str, ...], tuple[str, ...]]] = {
    "kitchen": (
        0.2,
        (30, 60),
        18.0,
        ("kitchen roll", "baking paper", "cling film", "sponges"),
        ("chef knife", "frying pan", "cutting board", "saucepan", "grater", "colander"),
    ),
    "baking": (
        0.5,
        (21, 45),
        9.0,
        ("flour", "sugar", "yeast", "baking powder", "vanilla sugar"),
        ("cake tin", "whisk", "mixing bowl", "rolling pin", "piping set"),
    ),
    "home decoration": (
        0.15,
        (45, 90),
        22.0,
        ("scented candles", "tea lights"),
        ("vase", "cushion", "photo frame", "wall clock", "throw", "lamp"),
    ),
    "toys": (
        0.0,
        (0, 0),
        20.0,
        (),
        ("puzzle", "board game", "plush bear", "wooden train", "building blocks", "doll"),
    ),
    "gifts": (
        0.1,
        (60, 120),
        15.0,
        ("gift wrap", "greeting cards"),
        ("gift box", "mug", "notebook", "keyring", "picture book"),
    ),
    "personal care": (
        0.8,
        (25, 60),
        6.0,
        ("hand soap", "shampoo", "toothpaste", "shower gel", "deodorant", "body lotion"),
        ("hair brush", "toilet bag", "nail kit"),
    ),
    "coffee & tea": (
        0.9,
        (10, 30),
        8.0,
        ("coffee beans", "ground coffee", "coffee pads", "green tea", "black tea", "herbal tea"),
        ("coffee grinder", "teapot", "french press"),
    ),
    "cleaning": (
        0.8,
        (25, 60),
        5.0,
        ("detergent", "dish soap", "all-purpose cleaner", "dishwasher tabs", "bin bags"),
        ("mop", "broom", "bucket"),
    ),
}
CATEGORY_NAMES: tuple[str, ...] = tuple(CATEGORIES)
BRANDS = ("Huismerk", "Dille", "Kamill", "Vanderveen", "Nordik", "Bolletje", "Zeeuws", "Lumen")

# named anchors from the brief: coffee about 14 days, soap about 35 days
_FIXED_CYCLES = {"coffee beans": 14, "ground coffee": 14, "coffee pads": 14, "hand soap": 35}


@dataclass(frozen=True)
class Catalogue:
    """Items plus the arrays the simulator draws from.

    Attributes
    ----------
    items : pandas.DataFrame
        Contract columns of the ``items`` table (item_id, title, category, brand, price,
        url, image_url, active, repurchasable, durable).
    category : ndarray of int, shape (n_items,)
        Category index of each item (into :data:`CATEGORY_NAMES`).
    consumable : ndarray of bool
        True for repurchasable consumables.
    cycle : ndarray of float
        Item median replenishment cycle in days (0 for durables).
    popularity : ndarray of float
        Within-pool popularity weight of each item.
    cons_share : ndarray of float, shape (n_categories,)
        Probability that a draw in the category is a consumable.
    discontinue_day : int
        Day from which inactive items can no longer be viewed or bought.
    """

    items: pd.DataFrame
    category: np.ndarray
    consumable: np.ndarray
    cycle: np.ndarray
    popularity: np.ndarray
    cons_share: np.ndarray
    discontinue_day: int

    @property
    def n_items(self) -> int:
        """Number of items."""
        return len(self.category)

    def pool_cdf(self, after_discontinue: bool) -> np.ndarray:
        """Cumulative popularity over items sorted by pool, offset by the pool index.

        Pool ``p = 2 * category + (0 if consumable else 1)``; items are stored in pool
        order, so ``searchsorted(cdf, p + u, side="right")`` with ``u`` uniform in [0, 1)
        draws an item of pool ``p`` proportionally to popularity.
        """
        pop = self.popularity.copy()
        if after_discontinue:
            pop[~self.items[c.ACTIVE].to_numpy()] = 0.0
        pool = 2 * self.category + (~self.consumable).astype(np.int64)
        cdf = np.empty(self.n_items)
        for p in np.unique(pool):
            idx = np.flatnonzero(pool == p)
            w = np.cumsum(pop[idx])
            cdf[idx] = p + w / w[-1]
        return cdf

    def item_prob(self, interests: np.ndarray) -> np.ndarray:
        """Probability that one item draw of each customer picks each consumable.

        Parameters
        ----------
        interests : ndarray, shape (n_customers, n_categories)
            Category-choice probabilities.

        Returns
        -------
        ndarray, shape (n_customers, n_items)
            Zero for durables (their probability changes with discontinuation and is not
            needed by the oracle).
        """
        pool_total = np.zeros(len(CATEGORY_NAMES))
        np.add.at(pool_total, self.category[self.consumable], self.popularity[self.consumable])
        within = np.where(
            self.consumable, self.popularity / np.maximum(pool_total[self.category], 1e-300), 0.0
        )
        return interests[:, self.category] * (self.cons_share[self.category] * within)[None, :]


def build_catalogue(rng: np.random.Generator, n_items: int, days: int) -> Catalogue:
    """Draw a catalogue of ``n_items`` items over the eight demo categories.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (the caller derives it from the shop seed).
    n_items : int
        Number of items, at least 40.
    days : int
        Length of the simulated period in days (sets the discontinuation day).

    Returns
    -------
    Catalogue
        Items sorted by pool (category, consumable first), ids ``I00001`` ...
    """
    if n_items < 40:
        raise ValueError(f"n_items must be at least 40, got {n_items}")
    n_cat = len(CATEGORY_NAMES)
    weights = rng.dirichlet(np.full(n_cat, 20.0))
    per_cat = np.maximum(5, np.round(weights * n_items).astype(int))
    per_cat[np.argmax(per_cat)] += n_items - per_cat.sum()

    rows: list[dict[str, object]] = []
    cats, cons, cycles = [], [], []
    cons_share = np.zeros(n_cat)
    for ci, name in enumerate(CATEGORY_NAMES):
        share, (lo, hi), price_med, cons_nouns, dur_nouns = CATEGORIES[name]
        cons_share[ci] = share
        n_cons = int(round(per_cat[ci] * share)) if share > 0 else 0
        if share > 0:
            n_cons = min(max(n_cons, 2), per_cat[ci] - (1 if share < 1 else 0))
        for k in range(per_cat[ci]):
            is_cons = k < n_cons
            nouns = cons_nouns if is_cons else dur_nouns
            noun = nouns[k % len(nouns)] if is_cons else nouns[(k - n_cons) % len(nouns)]
            brand = BRANDS[int(rng.integers(len(BRANDS)))]
            if is_cons:
                cycle = _FIXED_CYCLES.get(noun, float(rng.integers(lo, hi + 1)))
                price = float(np.round(price_med * rng.lognormal(0.0, 0.35), 2))
            else:
                cycle = 0.0
                price = float(np.round(price_med * 1.8 * rng.lognormal(0.0, 0.6), 2))
            rows.append({"brand": brand, "noun": noun, "price": max(price, 0.95)})
            cats.append(ci)
            cons.append(is_cons)
            cycles.append(float(cycle))

    n = len(rows)
    category = np.asarray(cats, dtype=np.int64)
    consumable = np.asarray(cons, dtype=bool)
    popularity = rng.lognormal(0.0, 0.9, n)
    active = ~((~consumable) & (rng.random(n) < 0.08))
    ids = [f"I{i + 1:05d}" for i in range(n)]
    items = pd.DataFrame(
        {
            c.ITEM_ID: ids,
            c.TITLE: [f"{r['brand']} {r['noun']}" for r in rows],
            c.CATEGORY: [CATEGORY_NAMES[k] for k in category],
            c.BRAND: [r["brand"] for r in rows],
            c.PRICE: np.asarray([r["price"] for r in rows], dtype=np.float64),
            c.URL: [f"https://shop.example.com/p/{i.lower()}" for i in ids],
            c.IMAGE_URL: [f"https://cdn.example.com/img/{i.lower()}.jpg" for i in ids],
            c.ACTIVE: active,
            c.REPURCHASABLE: consumable,
            c.DURABLE: ~consumable,
        }
    )
    return Catalogue(
        items=items,
        category=category,
        consumable=consumable,
        cycle=np.asarray(cycles),
        popularity=popularity,
        cons_share=cons_share,
        discontinue_day=int(days * 0.6),
    )
