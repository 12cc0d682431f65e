"""`make bench`: rebuild throughput of feedtrends against quix-streams, a plain Python loop and Flink SQL,
plus live latency and state growth of feedtrends (issue 7).  See BENCHMARKS.md."""
