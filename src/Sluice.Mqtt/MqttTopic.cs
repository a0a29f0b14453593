namespace Sluice.Mqtt;

/// <summary>Topic names and topic filters (MQTT 3.1.1 §4.7): <c>+</c> matches one level, <c>#</c> the rest.</summary>
public static class MqttTopic
{
    /// <summary>
    /// Whether <paramref name="topic"/> matches <paramref name="filter"/>. <c>sport/#</c> matches <c>sport</c>
    /// and everything below it; <c>sport/+</c> matches <c>sport/</c> but not <c>sport</c>; wildcards at the first
    /// level never match topics starting with <c>$</c>.
    /// </summary>
    public static bool Matches(string filter, string topic)
    {
        ArgumentNullException.ThrowIfNull(filter);
        ArgumentNullException.ThrowIfNull(topic);
        if (topic.Length > 0 && topic[0] == '$' && filter.Length > 0 && filter[0] is '+' or '#')
        {
            return false;
        }

        var f = 0;
        var t = 0;
        while (true)
        {
            var filterEnd = LevelEnd(filter, f);
            var level = filter.AsSpan(f, filterEnd - f);
            if (level is "#")
            {
                return true;
            }

            var topicEnd = LevelEnd(topic, t);
            if (level is not "+" && !level.SequenceEqual(topic.AsSpan(t, topicEnd - t)))
            {
                return false;
            }

            var lastFilterLevel = filterEnd == filter.Length;
            var lastTopicLevel = topicEnd == topic.Length;
            if (lastFilterLevel || lastTopicLevel)
            {
                // "a/#" also matches "a": the multi-level wildcard includes the parent level.
                return lastFilterLevel == lastTopicLevel || (lastTopicLevel && filter.AsSpan(filterEnd + 1) is "#");
            }

            f = filterEnd + 1;
            t = topicEnd + 1;
        }
    }

    /// <summary>Whether <paramref name="filter"/> is a valid subscription filter.</summary>
    public static bool IsValidFilter(string? filter)
    {
        if (string.IsNullOrEmpty(filter) || filter.Contains('\0', StringComparison.Ordinal) || !FitsStringField(filter))
        {
            return false;
        }

        var start = 0;
        while (true)
        {
            var end = LevelEnd(filter, start);
            var level = filter.AsSpan(start, end - start);
            if (level.Contains('#'))
            {
                // "#" must be a whole level, and the last one.
                if (level is not "#" || end != filter.Length)
                {
                    return false;
                }
            }
            else if (level.Contains('+') && level is not "+")
            {
                return false;
            }

            if (end == filter.Length)
            {
                return true;
            }

            start = end + 1;
        }
    }

    /// <summary>Whether <paramref name="topic"/> is a valid topic to publish to (no wildcards, not empty).</summary>
    public static bool IsValidTopicName(string? topic) =>
        !string.IsNullOrEmpty(topic)
        && topic.AsSpan().IndexOfAny('+', '#', '\0') < 0
        && FitsStringField(topic);

    private static int LevelEnd(string value, int start)
    {
        var slash = value.IndexOf('/', start);
        return slash < 0 ? value.Length : slash;
    }

    private static bool FitsStringField(string value) =>
        value.Length <= 21_845 || System.Text.Encoding.UTF8.GetByteCount(value) <= 65_535;
}
