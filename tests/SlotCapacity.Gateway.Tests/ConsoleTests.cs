using System.Diagnostics;
using System.Net;
using System.Text.Json;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using SlotCapacity.Contracts;
using Xunit.Abstractions;

namespace SlotCapacity.Gateway.Tests;

/// <summary>
/// The planners' console in a real browser: Debian's headless Chromium driven by Selenium through the
/// system chromedriver (tests/run-tests.sh installs both), against the engine and a gateway in process.
/// Screenshots land in console-screenshots/ next to the test assembly (the README's come from there).
/// </summary>
[Collection(WholeSystemCollection.Name)]
public sealed class ConsoleTests(ITestOutputHelper output)
{
    private static readonly DateTimeOffset Day = new(2030, 6, 3, 0, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    private static SlotConfig Config(long vans, bool open = true) => new()
    {
        Open = open,
        Fleet =
        {
            new FleetCounterConfig { Name = "vans", CapacityOrders = vans, Zones = { "north", "south" }, Carries = { "bulky" } },
            new FleetCounterConfig { Name = "bikes", CapacityOrders = 4, Zones = { "central" } },
        },
        Shared = { new SharedCounterConfig { Name = "picking", Measure = "items", Capacity = 1_000 } },
        ZoneRules = { new ZoneRule { Zone = "outer", Closed = true }, new ZoneRule { Zone = "south", MaxOrders = 6 } },
    };

    private static ReserveRequest Reserve(string id, SlotId slot, int holdSeconds = 0, string zone = "north") => new()
    {
        ReservationId = id,
        OrderId = "order-" + id,
        Slot = slot,
        Zone = zone,
        Needs = new OrderNeeds { Quantities = { ["items"] = 10 } },
        HoldSeconds = holdSeconds,
    };

    private static string Key(SlotId slot) => SlotKey.Create(slot.Hub, slot.Start.ToDateTimeOffset()).ToString();

    [Fact]
    public async Task The_page_loads_and_a_booking_through_grpc_changes_its_cell_live()
    {
        var (system, gateway, checkout) = await StartAsync();
        await using var owned = system;
        var planning = system.Planning(gateway);
        // A realistic week from the day after tomorrow (the sample plan's cut-off is 12 h before each
        // slot): 5 hubs x 7 days x 7 slots, some of it booked, so lead times are days, as in life.
        var firstDay = DateOnly.FromDateTime(DateTime.UtcNow.Date.AddDays(2));
        // Fleet capacities a quarter of the sample's, so a few thousand bookings show every fill level.
        var sample = System.Text.RegularExpressions.Regex.Replace(PlanFile.SampleCsv(firstDay, 7), @"(vans-north|vans-south|bikes-central)=(\d+)",
            m => $"{m.Groups[1].Value}={int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture) / 4}");
        var plan = PlanFile.ParseCsv("sample", sample);
        var applied = await planning.ApplyPlanAsync(plan);
        Assert.Equal(0, applied.Failed);
        await BookSomeAsync(checkout, plan);
        var closed = plan.Slots[9].Slot;
        Assert.True((await planning.SetSlotOpenAsync(new SetSlotOpenRequest { Slot = closed, Open = false })).Applied);
        var lowered = plan.Slots[Enumerable.Range(0, plan.Slots.Count).First(i => Orders(i, plan.Slots[i]) >= 3)];
        await LowerBelowUsedAsync(planning, lowered);

        using var browser = Browser.Start(output);
        browser.Open(gateway, $"/console?from={firstDay:yyyy-MM-dd}&days=7");
        var slot = plan.Slots[30].Slot;
        var cell = browser.Until(() => browser.Cell(Key(slot)), "the heat map shows the slot");
        Assert.Equal(245, browser.Driver.FindElements(By.CssSelector(".cell")).Count);
        Assert.Equal("false", browser.Cell(Key(closed))!.GetAttribute("data-open"));
        Assert.Equal("true", browser.Cell(Key(lowered.Slot))!.GetAttribute("data-over"));
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#chart-utilisation svg polyline")).Count == 5 ? true : (bool?)null, "the utilisation chart draws one line per hub");
        var usedBefore = long.Parse(cell!.GetAttribute("data-used")!);
        browser.Until(() => browser.Driver.FindElement(By.Id("live")).Text == "live" ? true : (bool?)null, "the live stream is connected");
        browser.Driver.ExecuteScript("window.notReloaded = true");

        // A whole second after every booking so far and before the next one: the instant to travel back to.
        var beforeLive = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 1);
        await Task.Delay(beforeLive - DateTimeOffset.UtcNow + TimeSpan.FromMilliseconds(200));
        var clock = Stopwatch.StartNew();
        var booked = await checkout.ReserveAsync(Reserve("live-1", slot));
        Assert.True(booked.Accepted, booked.Detail);
        browser.Until(() => browser.Cell(Key(slot))?.GetAttribute("data-used") == (usedBefore + 1).ToString() ? true : (bool?)null, "the cell shows the booking");
        output.WriteLine($"cell updated {clock.ElapsedMilliseconds} ms after the reserve call began");
        Assert.Equal(true, browser.Driver.ExecuteScript("return window.notReloaded === true"));

        browser.Cell(Key(slot))!.Click();
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#detail-events .events tr")).Count > 1 ? true : (bool?)null, "the slot's events are listed");
        Assert.Contains("live-1", browser.Driver.FindElement(By.Id("detail-events")).Text, StringComparison.Ordinal);
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#chart-curve svg polyline")).Count > 0 ? true : (bool?)null, "the fill curve is drawn");
        browser.Screenshot("console-overview.png");

        // Time travel: "As of" an instant before that booking rebuilds the view from the events alone.
        browser.Driver.ExecuteScript($"const i = document.getElementById('as-of'); i.value = '{beforeLive.UtcDateTime:yyyy-MM-ddTHH:mm:ss}'; i.dispatchEvent(new Event('change'));");
        browser.Until(() => browser.Driver.FindElement(By.Id("live")).Text.StartsWith("as of", StringComparison.Ordinal) ? true : (bool?)null, "the view rebuilt as of the instant");
        Assert.Equal(usedBefore.ToString(System.Globalization.CultureInfo.InvariantCulture), browser.Cell(Key(slot))!.GetAttribute("data-used"));
        Assert.Equal("false", browser.Cell(Key(closed))!.GetAttribute("data-open"));
        browser.Driver.FindElement(By.Id("as-of-now")).Click();
        browser.Until(() => browser.Cell(Key(slot))?.GetAttribute("data-used") == (usedBefore + 1).ToString() ? true : (bool?)null, "back to the live view");
    }

    [Fact]
    public async Task A_slot_closed_from_the_page_rejects_checkout_with_slot_closed_and_a_refused_change_shows_why()
    {
        var (system, gateway, checkout) = await StartAsync();
        await using var owned = system;
        var slot = EngineAndGateways.Slot("LDS1", Day.AddHours(10));
        await system.ConfigureAsync(gateway, slot, Config(vans: 8));
        Assert.True((await checkout.ReserveAsync(Reserve("before", slot, holdSeconds: 600))).Accepted);

        using var browser = Browser.Start(output);
        browser.Open(gateway, "/console?from=2030-06-03&days=7&hub=LDS1");
        browser.Until(() => browser.Cell(Key(slot)), "the heat map shows the slot").Click();
        browser.Until(() => browser.Driver.FindElements(By.Id("toggle-open")).FirstOrDefault(), "the slot detail").Click();
        browser.Until(() => browser.Driver.FindElement(By.Id("detail-message")).Text.Contains("Slot closed", StringComparison.Ordinal) ? true : (bool?)null, "the close is confirmed");

        var refused = await checkout.ReserveAsync(Reserve("after", slot));
        Assert.False(refused.Accepted);
        Assert.Equal(RejectReason.SlotClosed, refused.Reason);
        browser.Until(() => browser.Cell(Key(slot))?.GetAttribute("data-open") == "false" ? true : (bool?)null, "the cell shows the slot closed");
        // The close is an event of the slot too (configured, held, configured): the open detail reads it live.
        browser.Until(() => browser.Driver.FindElements(By.CssSelector("#detail-events .events tr")).Count == 4 ? true : (bool?)null, "the close in the slot's events");
        // ...naming who closed it: the token's subject of the planner at the page.
        Assert.Contains($" by {EngineAndGateways.PlannerName}", browser.Driver.FindElement(By.Id("detail-events")).Text, StringComparison.Ordinal);

        var capacity = browser.Driver.FindElement(By.CssSelector("input[data-kind='fleet'][data-name='vans']"));
        capacity.Clear();
        capacity.SendKeys("-3");
        browser.Driver.FindElement(By.Id("save-capacity")).Click();
        var why = browser.Until(() => browser.Driver.FindElement(By.Id("detail-message")).Text is var text && text.Contains("Refused", StringComparison.Ordinal) ? text : null, "the refusal");
        Assert.Contains("capacity_orders: -3 is negative", why, StringComparison.Ordinal);
        browser.Screenshot("console-slot-detail.png");
    }

    [Fact]
    public async Task An_uploaded_plan_shows_its_diff_before_it_is_applied_and_a_bad_one_is_refused_with_line_numbers()
    {
        var (system, gateway, checkout) = await StartAsync();
        await using var owned = system;
        var busy = EngineAndGateways.Slot("MAN1", Day.AddHours(10));
        await system.ConfigureAsync(gateway, busy, Config(vans: 8));
        for (var i = 0; i < 5; i++) Assert.True((await checkout.ReserveAsync(Reserve($"b{i}", busy))).Accepted);

        var good = system.StatePath("week.csv");
        await File.WriteAllTextAsync(good, $"""
            {PlanFile.Header}
            MAN1,2030-06-03,10:00,true,0,vans=3@north+south/bulky;bikes=4@central,picking:items=1000,outer:closed;south:max=6
            MAN1,2030-06-03,12:00,true,0,vans=10,,
            """);
        var bad = system.StatePath("broken.csv");
        await File.WriteAllTextAsync(bad, $"""
            {PlanFile.Header}
            MAN1,2030-06-03,14:00,true,0,vans=10,,
            MAN1,2030-06-03,16:00,maybe,0,vans=10,,
            MAN1,2030-06-03,18:00,true,0,vans=-2,,
            """);

        using var browser = Browser.Start(output);
        browser.Open(gateway, "/console?from=2030-06-03&days=7&hub=MAN1");
        browser.Until(() => browser.Cell(Key(busy)), "the heat map shows the slot");

        browser.Driver.FindElement(By.Id("plan-file")).SendKeys(bad);
        browser.Driver.FindElement(By.Id("plan-preview")).Click();
        var problems = browser.Until(() => browser.Driver.FindElements(By.Id("plan-problems")).FirstOrDefault()?.Text, "the bad plan's problems");
        Assert.Contains("broken.csv line 3, column open: 'maybe' is not true or false", problems, StringComparison.Ordinal);
        Assert.Contains("broken.csv line 4, column fleet: 'vans=-2' needs a whole number", problems, StringComparison.Ordinal);
        Assert.False(browser.Driver.FindElement(By.Id("plan-apply")).Enabled);
        using (var http = ConsoleClient(gateway, SlotRoles.Planner))
        {
            var refused = await http.PostAsync("/console/api/plan/apply?name=broken.csv", new StringContent(await File.ReadAllTextAsync(bad)));
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        }

        browser.Driver.FindElement(By.Id("plan-file")).SendKeys(good);
        browser.Driver.FindElement(By.Id("plan-preview")).Click();
        var summary = browser.Until(() => browser.Driver.FindElements(By.Id("plan-summary")).FirstOrDefault()?.Text, "the dry run");
        Assert.Contains("1 new, 1 changed, 0 unchanged; 1 would be over-committed", summary, StringComparison.Ordinal);
        var diff = browser.Driver.FindElement(By.Id("plan-diff")).Text;
        Assert.Contains("fleet vans: 8 -> 3 orders", diff, StringComparison.Ordinal);
        Assert.Contains("fleet vans: 5 used > 3", diff, StringComparison.Ordinal);
        browser.Screenshot("console-plan-diff.png");
        // The dry run and the refused file changed nothing: the 12:00 slot and the broken file's slots do not exist.
        var before = await system.Planning(gateway).GetUtilisationAsync(new UtilisationRequest
        {
            Hub = "MAN1", From = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(Day), To = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(Day.AddDays(1)), IncludeSlots = true,
        });
        Assert.Equal([Key(busy)], before.Slots.Select(s => s.Slot));
        Assert.Equal(8, before.Slots[0].Fleet.Single(f => f.Name == "vans").CapacityOrders);

        browser.Driver.FindElement(By.Id("plan-apply")).Click();
        var done = browser.Until(() => browser.Driver.FindElements(By.Id("plan-applied")).FirstOrDefault()?.Text, "the plan applied");
        Assert.Equal("Applied 2 slots, 0 failed.", done);
        browser.Until(() => browser.Cell(Key(busy))?.GetAttribute("data-over") == "true" ? true : (bool?)null, "the over-committed slot marked live");
    }

    [Fact]
    public async Task Bad_console_requests_get_a_clear_error_and_no_stack_trace()
    {
        var (system, gateway, _) = await StartAsync();
        await using var owned = system;
        using var http = ConsoleClient(gateway, SlotRoles.Planner);
        async Task<string> Refused(HttpResponseMessage response, HttpStatusCode status)
        {
            var body = await response.Content.ReadAsStringAsync();
            Assert.Equal(status, response.StatusCode);
            Assert.DoesNotContain("   at ", body, StringComparison.Ordinal);
            return JsonDocument.Parse(body).RootElement.GetProperty("error").GetString()!;
        }
        // The page itself is open; its data needs a token, its changes a planner's.
        using (var anonymous = new HttpClient { BaseAddress = gateway.AdminAddress })
        {
            Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/console")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/console/api/utilisation")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.PostAsync("/console/api/slot/open", JsonContent("""{"slot":"LON1@2030-06-03T10:00Z","open":false}"""))).StatusCode);
        }
        using (var viewer = ConsoleClient(gateway, SlotRoles.Viewer))
        {
            Assert.Equal(HttpStatusCode.OK, (await viewer.GetAsync("/console/api/utilisation")).StatusCode);
            Assert.Equal(HttpStatusCode.Forbidden, (await viewer.PostAsync("/console/api/slot/open", JsonContent("""{"slot":"LON1@2030-06-03T10:00Z","open":false}"""))).StatusCode);
        }
        using (var checkout = ConsoleClient(gateway, SlotRoles.Checkout))
            Assert.Equal(HttpStatusCode.Forbidden, (await checkout.GetAsync("/console/api/utilisation")).StatusCode);
        Assert.Contains("is not a slot key", await Refused(await http.GetAsync("/console/api/slot?key=nonsense"), HttpStatusCode.BadRequest), StringComparison.Ordinal);
        Assert.Contains("not known", await Refused(await http.GetAsync("/console/api/slot?key=LON1@2030-06-03T10:00Z"), HttpStatusCode.NotFound), StringComparison.Ordinal);
        Assert.Contains("from: 'soon' is not a date", await Refused(await http.GetAsync("/console/api/utilisation?from=soon"), HttpStatusCode.BadRequest), StringComparison.Ordinal);
        Assert.Contains("range is longer than", await Refused(await http.GetAsync("/console/api/utilisation?from=2030-01-01&to=2031-01-01"), HttpStatusCode.BadRequest), StringComparison.Ordinal);
        Assert.Contains("date: 'x' is not yyyy-MM-dd", await Refused(await http.GetAsync("/console/api/fill-curve?hub=LON1&date=x"), HttpStatusCode.BadRequest), StringComparison.Ordinal);
        Assert.Contains("is not a slot key", await Refused(await http.PostAsync("/console/api/slot/open", JsonContent("""{"slot":"x","open":false}""")), HttpStatusCode.BadRequest), StringComparison.Ordinal);
        Assert.Contains("no console asset", await Refused(await http.GetAsync("/console/assets/secret.txt"), HttpStatusCode.NotFound), StringComparison.Ordinal);
        Assert.Contains("is not the JSON expected", await Refused(await http.PostAsync("/console/api/slot/open", JsonContent("{not json")), HttpStatusCode.BadRequest), StringComparison.Ordinal);
        Assert.Contains("Content-Type: application/json", await Refused(await http.PostAsync("/console/api/slot/capacity", new StringContent("slot=x")), HttpStatusCode.UnsupportedMediaType), StringComparison.Ordinal);
        // No console open: the view's hook is off, so bookings cost the feed nothing.
        Assert.Equal(0, gateway.ConsoleListeners);
    }

    /// <summary>The engine and one gateway on fresh topics.</summary>
    private async Task<(EngineAndGateways System, RunningGateway Gateway, Checkout.CheckoutClient Checkout)> StartAsync()
    {
        var system = await EngineAndGateways.StartAsync(output);
        var gateway = await system.StartGatewayAsync("gw-a", deadline: TimeSpan.FromSeconds(2));
        return (system, gateway, system.Checkout(gateway));
    }

    private static StringContent JsonContent(string json) => new(json, System.Text.Encoding.UTF8, "application/json");

    /// <summary>Books a spread of the plan's slots (a deterministic mix of fill levels) through gRPC.</summary>
    private static async Task BookSomeAsync(Checkout.CheckoutClient checkout, ApplyPlanRequest plan)
    {
        var calls = new List<Task>();
        using var limit = new SemaphoreSlim(16);
        for (var i = 0; i < plan.Slots.Count; i++)
        {
            var slot = plan.Slots[i].Slot;
            var orders = Orders(i, plan.Slots[i]);
            for (var o = 0; o < orders; o++)
            {
                var id = $"seed-{i}-{o}";
                await limit.WaitAsync();
                calls.Add(Task.Run(async () =>
                {
                    try
                    {
                        // "central" is served by every fleet counter: the bookings spread over them.
                        await checkout.ReserveAsync(Reserve(id, slot, holdSeconds: o % 4 == 0 ? 3_600 : 0, zone: "central"));
                    }
                    finally
                    {
                        limit.Release();
                    }
                }));
            }
        }
        await Task.WhenAll(calls);
    }

    /// <summary>Orders booked on the plan's slot <paramref name="index"/>: a deterministic spread from empty to nearly full.</summary>
    private static int Orders(int index, ConfigureSlotRequest slot)
    {
        double[] fill = [0, 0.1, 0.3, 0.5, 0.2, 0.7, 0.85, 0.4, 0.95, 0.6, 0.15];
        return (int)(fill[index * 37 % fill.Length] * slot.Config.Fleet.Sum(f => f.CapacityOrders));
    }

    private static async Task LowerBelowUsedAsync(Planning.PlanningClient planning, ConfigureSlotRequest slot)
    {
        var config = slot.Config.Clone();
        foreach (var fleet in config.Fleet) fleet.CapacityOrders = 1;
        var result = await planning.ConfigureSlotAsync(new ConfigureSlotRequest { Slot = slot.Slot, Config = config });
        Assert.True(result.Applied, result.Detail);
    }

    /// <summary>Headless Chromium through the system chromedriver, both at fixed paths: Selenium Manager
    /// is never asked to find or download anything.</summary>
    private sealed class Browser : IDisposable
    {
        public const string ChromiumPath = "/usr/bin/chromium";
        public const string DriverPath = "/usr/bin/chromedriver";
        private readonly ITestOutputHelper output;

        public ChromeDriver Driver { get; }

        private Browser(ChromeDriver driver, ITestOutputHelper output)
        {
            Driver = driver;
            this.output = output;
        }

        public static Browser Start(ITestOutputHelper output)
        {
            if (!File.Exists(ChromiumPath) || !File.Exists(DriverPath))
                throw new InvalidOperationException($"{ChromiumPath} or {DriverPath} is missing: install the Debian packages chromium and chromium-driver (tests/run-tests.sh does)");
            var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(DriverPath)!, Path.GetFileName(DriverPath));
            service.SuppressInitialDiagnosticInformation = true;
            service.HideCommandPromptWindow = true;
            var options = new ChromeOptions { BinaryLocation = ChromiumPath };
            options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1920,1080", "--force-device-scale-factor=1", "--lang=en-GB");
            return new Browser(new ChromeDriver(service, options, TimeSpan.FromSeconds(90)), output);
        }

        public void Open(RunningGateway gateway, string path)
        {
            // A planner's token in the fragment, as make run prints the link: the page keeps it for the tab.
            Driver.Navigate().GoToUrl(new Uri(gateway.AdminAddress, path + "#token=" + EngineAndGateways.Token(SlotRoles.Planner, EngineAndGateways.PlannerName)));
            output.WriteLine($"opened {Driver.Url}: {Driver.Title}");
        }

        public IWebElement? Cell(string slot) => Driver.FindElements(By.CssSelector($".cell[data-slot='{slot}']")).FirstOrDefault();

        /// <summary>Polls until <paramref name="probe"/> gives a value; fails naming what was awaited.</summary>
        public T Until<T>(Func<T?> probe, string what) where T : class
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    if (probe() is { } found) return found;
                }
                catch (StaleElementReferenceException)
                {
                    // The live update redrew the heat map between finding an element and reading it.
                }
                if (clock.Elapsed > Wait)
                {
                    Screenshot("failed-" + Guid.NewGuid().ToString("N")[..8] + ".png");
                    throw new Xunit.Sdk.XunitException($"waited {Wait.TotalSeconds:0} s for {what}; page text: {Driver.FindElement(By.TagName("body")).Text[..Math.Min(2000, Driver.FindElement(By.TagName("body")).Text.Length)]}");
                }
                Thread.Sleep(50);
            }
        }

        public bool Until(Func<bool?> probe, string what) => Until<object>(() => probe(), what) is true;

        public void Screenshot(string name)
        {
            var folder = Path.Combine(AppContext.BaseDirectory, "console-screenshots");
            Directory.CreateDirectory(folder);
            var path = Path.Combine(folder, name);
            Driver.GetScreenshot().SaveAsFile(path);
            output.WriteLine($"screenshot {path}");
        }

        public void Dispose()
        {
            Driver.Quit();
            Driver.Dispose();
        }
    }

    /// <summary>An HTTP client of the console's JSON API with a token of <paramref name="role"/>.</summary>
    private static HttpClient ConsoleClient(RunningGateway gateway, string role)
    {
        var http = new HttpClient { BaseAddress = gateway.AdminAddress };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", EngineAndGateways.Token(role, EngineAndGateways.PlannerName));
        return http;
    }
}
