using StreamHealth.Gateway;
using StreamHealth.Gateway.Apis;

var builder = WebApplication.CreateBuilder(args);
builder.AddStreamHealthServices();

var app = builder.Build();
app.UseStreamHealthDefaults();
app.MapHealthApi();
app.MapTopicsApi();
app.MapStreamsApi();
app.MapEventsApi();
app.MapWeightApi();
app.MapCgmApi();
app.MapHealthMetricsApi();
app.MapNutritionLogsApi();
app.MapHealthGoalsApi();
app.MapRecommendationsApi();
app.MapForecastApi();
app.MapSensorsApi();
app.MapIdentityApi();
app.MapCallWebhookApi();
app.MapCheckinsApi();
app.Run();

public partial class Program;
