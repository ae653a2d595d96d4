"""Item recommenders (candidate sources), ranking and next-best-offers.

See :class:`models.recommender.base.Recommender` for the contract every source follows.
"""

from models.recommender.als import ALSRecommender
from models.recommender.base import RECOMMENDERS, Recommender
from models.recommender.buy_again import BuyAgainRecommender
from models.recommender.ease import EASERecommender
from models.recommender.item_knn import ItemKNNRecommender
from models.recommender.popularity import CategoryPopularityRecommender, PopularityRecommender
from models.recommender.recent import RecentlyViewedRecommender

__all__ = [
    "RECOMMENDERS",
    "ALSRecommender",
    "BuyAgainRecommender",
    "CategoryPopularityRecommender",
    "EASERecommender",
    "ItemKNNRecommender",
    "PopularityRecommender",
    "RecentlyViewedRecommender",
    "Recommender",
]
