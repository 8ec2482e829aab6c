using Microsoft.Playwright;
using StreamHealth.Tests.Infrastructure;

namespace StreamHealth.Tests.Dashboard;

/// <summary>The dashboard in Debian's chromium, driven by Playwright (the package's own browser download is never run):
/// a person signs in with their password and sees their weights, CGM and check-ins drawn; the local key then shows the
/// water network; pipeline health arrives by the event stream. Screenshots of every panel go to
/// TestResults/dashboard-screenshots (ignored; CI keeps them as artefacts).</summary>
[Collection(DashboardCollection.Name)]
public sealed class DashboardBrowserTests(DashboardStack d) : IAsyncLifetime
{
    public const string ChromiumPath = "/usr/bin/chromium";
    // The machine's network is closed: no background, component or sync traffic (each would be refused).
    public static readonly string[] ChromiumArgs = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"];
    public static string ScreenshotDirectory { get; } = Path.Combine(Repo.Root, "TestResults", "dashboard-screenshots");
    // Data appears as the pipeline and the event stream deliver it; generous, never a timing assertion.
    private const float DataWaitMs = 60_000;
    private IPlaywright _playwright = null!;
    private IBrowser _browser = null!;

    public async Task InitializeAsync()
    {
        Assert.True(File.Exists(ChromiumPath), $"{ChromiumPath} is missing: run compose/local/setup.sh (it installs Debian's chromium)");
        Assert.True(File.Exists(Path.Combine(Repo.Root, "gateway", "wwwroot", "index.html")),
            "gateway/wwwroot/index.html is missing: run compose/local/setup.sh (it builds the dashboard from gateway/dashboard)");
        Directory.CreateDirectory(ScreenshotDirectory);
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath,
            Headless = true,
            Args = ChromiumArgs,
        });
    }

    public async Task DisposeAsync()
    {
        if (_browser is not null) await _browser.DisposeAsync();
        _playwright?.Dispose();
    }

    [Fact]
    public async Task A_person_signs_in_and_every_panel_draws_live_data()
    {
        var page = await _browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 900 } });
        var failedRequests = new List<string>();
        page.RequestFailed += (_, request) => { if (!request.Url.Contains("/events/stream", StringComparison.Ordinal)) failedRequests.Add(request.Url); };
        page.PageError += (_, error) => failedRequests.Add("script error: " + error);
        await page.GotoAsync(d.Stack.BaseUrl + "/");

        // Pipeline health, pushed by the event stream without signing in.
        await WaitForCountAsync(page, "#pipeline-table");
        Assert.Equal("open", await page.GetAttributeAsync("#live", "data-state"));
        await ScreenshotAsync(page, "pipeline");

        // A person's own data, with the identity API's token.
        await page.FillAsync("#email", d.Email);
        await page.FillAsync("#password", DashboardStack.Password);
        await page.ClickAsync("#sign-in-button");
        await page.WaitForFunctionAsync("id => document.getElementById('signed-in').textContent.includes(id)", d.UserId,
            new PageWaitForFunctionOptions { Timeout = DataWaitMs });

        await page.ClickAsync("#tabs button[data-panel=weights]");
        await WaitForCountAsync(page, "#weights-chart");
        Assert.True(await page.Locator("#weights-chart canvas").CountAsync() > 0, "the weight chart drew no canvas");
        // The 140 kg measurement among ~80 kg ones is rejected by the filter and marked as such.
        Assert.True(int.Parse(await page.GetAttributeAsync("#weights-chart", "data-rejected") ?? "0") > 0, "no rejected measurement is marked");
        await ScreenshotAsync(page, "weights");

        await page.ClickAsync("#tabs button[data-panel=cgm]");
        await WaitForCountAsync(page, "#cgm-chart");
        Assert.True(await page.Locator("#cgm-chart canvas").CountAsync() > 0, "the CGM chart drew no canvas");
        await ScreenshotAsync(page, "cgm");

        await page.ClickAsync("#tabs button[data-panel=checkins]");
        await WaitForCountAsync(page, "#checkins-feed");
        Assert.Contains("local-dev", await page.InnerTextAsync("#checkins-feed"));
        await ScreenshotAsync(page, "checkins");

        // The water network is a service's view: the local stack's key (every scope).
        await page.FillAsync("#email", "");
        await page.FillAsync("#api-key", Gateway.Contract.GatewayStackFixture.ApiKey);
        await page.ClickAsync("#sign-in-button");
        await page.ClickAsync("#tabs button[data-panel=network]");
        await WaitForCountAsync(page, "#network-nodes", atLeast: 3);
        await WaitForCountAsync(page, "#network-anomalies");
        Assert.Contains("dma-north", await page.InnerTextAsync("#network-anomalies"));
        await ScreenshotAsync(page, "network");

        Assert.True(failedRequests.Count == 0, "failed requests or script errors: " + string.Join("; ", failedRequests));
    }

    private static async Task WaitForCountAsync(IPage page, string selector, int atLeast = 1)
    {
        try
        {
            await page.WaitForFunctionAsync("([s, n]) => Number(document.querySelector(s)?.dataset.count ?? 0) >= n",
                new object[] { selector, atLeast }, new PageWaitForFunctionOptions { Timeout = DataWaitMs, PollingInterval = 250 });
        }
        catch (TimeoutException)
        {
            await ScreenshotAsync(page, "failed-" + selector.TrimStart('#'));
            Assert.Fail($"{selector} drew fewer than {atLeast} items within {DataWaitMs / 1000} s; the page said: {await page.InnerTextAsync("main")}");
        }
    }

    private static Task ScreenshotAsync(IPage page, string name) =>
        page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(ScreenshotDirectory, name + ".png"), FullPage = true });
}
