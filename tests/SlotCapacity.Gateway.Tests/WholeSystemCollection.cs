namespace SlotCapacity.Gateway.Tests;

/// <summary>
/// Tests that start processors, gateways and gateway processes, and kill some of them, run alone
/// once the other test classes are done: on two cores, a killed gateway's replacement or a restarted
/// engine competing with other suites' processes missed its waits.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class WholeSystemCollection
{
    public const string Name = "whole system";
}
