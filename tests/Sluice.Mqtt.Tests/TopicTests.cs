namespace Sluice.Mqtt.Tests;

public sealed class TopicTests
{
    [Theory]
    [InlineData("sport/tennis/player1/#", "sport/tennis/player1", true)]
    [InlineData("sport/tennis/player1/#", "sport/tennis/player1/ranking", true)]
    [InlineData("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true)]
    [InlineData("sport/tennis/player1/#", "sport/tennis/player2", false)]
    [InlineData("sport/#", "sport", true)]
    [InlineData("#", "anything/at/all", true)]
    [InlineData("#", "/", true)]
    [InlineData("sport/tennis/+", "sport/tennis/player1", true)]
    [InlineData("sport/tennis/+", "sport/tennis/player1/tricks", false)]
    [InlineData("sport/tennis/+", "sport/tennis", false)]
    [InlineData("sport/+", "sport/", true)]
    [InlineData("sport/+", "sport", false)]
    [InlineData("+/+", "/finance", true)]
    [InlineData("/+", "/finance", true)]
    [InlineData("+", "/finance", false)]
    [InlineData("+", "finance", true)]
    [InlineData("+/tennis/#", "sport/tennis/a/b", true)]
    [InlineData("+/tennis/#", "sport/golf/a", false)]
    [InlineData("a/b", "a/b", true)]
    [InlineData("a/b", "a/b/c", false)]
    [InlineData("a/b/c", "a/b", false)]
    [InlineData("a/b", "A/b", false)]
    [InlineData("sluice/requests/#", "sluice/requests", true)]
    [InlineData("sluice/requests/#", "sluice/requests/dev/1", true)]
    [InlineData("sluice/requests/#", "sluice/responses/1", false)]
    [InlineData("#", "$SYS/broker/uptime", false)]
    [InlineData("+/broker/uptime", "$SYS/broker/uptime", false)]
    [InlineData("$SYS/#", "$SYS/broker/uptime", true)]
    [InlineData("$SYS/+/uptime", "$SYS/broker/uptime", true)]
    public void Filters_match_as_the_spec_describes(string filter, string topic, bool matches)
    {
        Assert.True(MqttTopic.IsValidFilter(filter));
        Assert.Equal(matches, MqttTopic.Matches(filter, topic));
    }

    [Theory]
    [InlineData("#", true)]
    [InlineData("+", true)]
    [InlineData("a/+/b/#", true)]
    [InlineData("/", true)]
    [InlineData("a//b", true)]
    [InlineData("", false)]
    [InlineData("a/#/b", false)]
    [InlineData("a#", false)]
    [InlineData("a/b#", false)]
    [InlineData("a+/b", false)]
    [InlineData("a/+b", false)]
    [InlineData("a/\0", false)]
    public void Filter_validation(string filter, bool valid) => Assert.Equal(valid, MqttTopic.IsValidFilter(filter));

    [Theory]
    [InlineData("a/b", true)]
    [InlineData("/", true)]
    [InlineData("résumé/ü", true)]
    [InlineData("", false)]
    [InlineData("a/+", false)]
    [InlineData("a/#", false)]
    [InlineData("a\0b", false)]
    public void Topic_name_validation(string topic, bool valid) => Assert.Equal(valid, MqttTopic.IsValidTopicName(topic));

    [Fact]
    public void Topic_longer_than_the_string_field_is_invalid()
    {
        Assert.True(MqttTopic.IsValidTopicName(new string('a', 65_535)));
        Assert.False(MqttTopic.IsValidTopicName(new string('a', 65_536)));
        Assert.False(MqttTopic.IsValidFilter(new string('é', 40_000)));
    }
}
