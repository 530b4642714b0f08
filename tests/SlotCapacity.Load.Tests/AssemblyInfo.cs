// The rate and latency tests measure time; suites running beside them would only add noise.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
