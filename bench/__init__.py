"""`make bench`: rebuild throughput of feedtrends against quix-streams, a plain Python loop and Flink SQL,
plus live latency and state growth of feedtrends.  See BENCHMARKS.md."""
