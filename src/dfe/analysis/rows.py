"""The names of the feature-set rows that every prediction report shares (``dfe evaluate-task``,
``dfe study``), in a module of their own so that reading them imports nothing heavy."""

BAG_NAME = "dfe tokens (BoW)"  # the bag of tokens, the row every other feature set is compared with
GAIN_BAG = "dfe actions x intensity (BoW)"  # the gain-weighted bag of a shape-gain model
