"""The bottom layer: what every other package of feedtrends may import (the configuration).

It imports nothing of ours, so the job and the connectors never pull in the CLI.
"""
