"""`make bench`: the whole system on MySQL under a closed-loop order load, measured."""
