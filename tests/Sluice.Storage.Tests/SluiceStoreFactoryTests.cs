namespace Sluice.Storage.Tests;

public sealed class SluiceStoreFactoryTests
{
    [Theory]
    [InlineData("sqlite:data/sluice.db", "data/sluice.db")]
    [InlineData("SQLITE: /var/lib/sluice/s.db ", "/var/lib/sluice/s.db")]
    [InlineData("Data Source=/tmp/x.db", "/tmp/x.db")]
    [InlineData("Data Source=/tmp/x.db;Cache=Shared", "/tmp/x.db")]
    public void Sqlite_forms_select_sqlite(string connectionString, string path)
    {
        var target = SluiceStoreFactory.Parse(connectionString);
        Assert.Equal(path, target.SqlitePath);
        Assert.Null(target.Postgres);
    }

    [Fact]
    public void Keyword_form_selects_postgres()
    {
        var target = SluiceStoreFactory.Parse("Host=db.internal;Port=6432;Database=sluice;Username=gw;Password=s3cret");
        Assert.Null(target.SqlitePath);
        Assert.Equal(("db.internal", 6432, "sluice", "gw", "s3cret"), (target.Postgres!.Host, target.Postgres.Port, target.Postgres.Database, target.Postgres.Username, target.Postgres.Password));
    }

    [Theory]
    [InlineData("postgres://gw:p%40ss%3Aword@db.internal:6432/sluice?sslmode=disable", 6432)]
    [InlineData("postgresql://gw:p%40ss%3Aword@db.internal/sluice", 5432)]
    public void Url_form_selects_postgres_and_decodes_credentials(string url, int port)
    {
        var builder = SluiceStoreFactory.Parse(url).Postgres!;
        Assert.Equal(("db.internal", port, "sluice", "gw", "p@ss:word"), (builder.Host, builder.Port, builder.Database, builder.Username, builder.Password));
    }

    [Theory]
    [InlineData("")]
    [InlineData("mysql://root:hunter2@db/sluice")]
    [InlineData("User=root;Password=hunter2")]
    [InlineData("not a connection string hunter2")]
    [InlineData("postgres://root:hunter2@db/sluice?bogus_option=1")]
    public void Unrecognized_strings_name_the_formats_and_never_the_password(string connectionString)
    {
        var error = Assert.Throws<StoreConfigurationException>(() => SluiceStoreFactory.Parse(connectionString));
        Assert.Contains("sqlite:PATH", error.Message, StringComparison.Ordinal);
        Assert.Contains("postgres://", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("sqlite:")]
    [InlineData("sqlite::memory:")]
    [InlineData("Data Source=:memory:")]
    public void In_memory_sqlite_is_refused_because_restarts_would_lose_everything(string connectionString)
    {
        var error = Assert.Throws<StoreConfigurationException>(() => SluiceStoreFactory.Parse(connectionString));
        Assert.Contains("sqlite:data/sluice.db", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Default_connection_string_is_a_sqlite_file_in_the_data_directory()
    {
        var directory = Path.Combine(Path.GetTempPath(), "sluice-default-" + Guid.NewGuid().ToString("N"));
        try
        {
            var connectionString = SluiceStoreFactory.DefaultConnectionString(directory);
            Assert.Equal("sqlite:" + Path.Combine(directory, "sluice.db"), connectionString);
            await using (var store = await SluiceStoreFactory.OpenAsync(connectionString))
            {
                Assert.Equal("sqlite:" + Path.Combine(directory, "sluice.db"), store.Description);
            }

            Assert.True(File.Exists(Path.Combine(directory, "sluice.db")));
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(directory, recursive: true);
        }
    }
}
