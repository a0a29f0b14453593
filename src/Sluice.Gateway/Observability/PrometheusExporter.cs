using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Sluice.Gateway.Observability;

/// <summary>
/// Sluice's own Prometheus exposition: a <see cref="MeterListener"/> that aggregates the gateway's instruments (its own
/// <see cref="Meter"/>, by reference, so two gateways in one process never count each other's calls) and the runtime's
/// built-in <c>System.Runtime</c> meter, and writes them in the Prometheus text format (version 0.0.4) on each scrape.
/// </summary>
/// <remarks>
/// <para>Counters and up-down counters are summed per label set; histograms keep cumulative bucket counts (the buckets
/// are the instruments' advice); observable instruments are read at scrape time. Names follow the OpenTelemetry to
/// Prometheus convention: dots become underscores, the unit is appended (<c>_seconds</c>, <c>_bytes</c>) and monotonic
/// counters end in <c>_total</c>.</para>
/// <para>Cardinality is bounded: each metric keeps at most <c>maxSeriesPerMetric</c> label sets; measurements with a
/// new label set beyond that are counted in one series whose labels are all <c>_overflow</c>.</para>
/// <para>The measurement path takes no lock and allocates nothing once a series exists: the label set is looked up by
/// the measurement's tag span (an alternate lookup of the series dictionary).</para>
/// </remarks>
internal sealed class PrometheusExporter : IDisposable
{
    private const string RuntimeMeterName = "System.Runtime";

    private readonly MeterListener _listener;
    private readonly ConcurrentDictionary<Instrument, MetricState> _metrics = new();
    private readonly Meter _own;
    private readonly int _maxSeries;
    private readonly Lock _scrape = new();

    public PrometheusExporter(Meter own, int maxSeriesPerMetric)
    {
        _own = own;
        _maxSeries = maxSeriesPerMetric;
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (ReferenceEquals(instrument.Meter, _own) || instrument.Meter.Name == RuntimeMeterName)
                {
                    var state = _metrics.GetOrAdd(instrument, i => new MetricState(i, _maxSeries));
                    listener.EnableMeasurementEvents(instrument, state);
                }
            },
            MeasurementsCompleted = (instrument, _) => _metrics.TryRemove(instrument, out MetricState? _),
        };
        _listener.SetMeasurementEventCallback<long>(static (_, value, tags, state) => ((MetricState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<int>(static (_, value, tags, state) => ((MetricState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<double>(static (_, value, tags, state) => ((MetricState)state!).Record(value, tags));
        _listener.Start();
    }

    /// <summary>The content type of <see cref="Write"/>'s output.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    /// <summary>Reads the observable instruments and writes every metric.</summary>
    public void Write(StringBuilder output)
    {
        ArgumentNullException.ThrowIfNull(output);

        // One scrape at a time: observable instruments report into shared "last value" series.
        lock (_scrape)
        {
            _listener.RecordObservableInstruments();
            foreach (var group in _metrics.Values.GroupBy(m => m.Name).OrderBy(g => g.Key, StringComparer.Ordinal))
            {
                var first = group.First();
                output.Append("# HELP ").Append(first.Name).Append(' ').Append(Escape(first.Help, help: true)).Append('\n');
                output.Append("# TYPE ").Append(first.Name).Append(' ').Append(first.Type).Append('\n');
                foreach (var metric in group)
                {
                    metric.Write(output);
                }
            }
        }
    }

    /// <summary>The current value of one series, for tests and the bench: the sum (counters), last value, or histogram count.</summary>
    public double Value(string prometheusName, params (string Name, string Value)[] labels)
    {
        var total = 0.0;
        foreach (var metric in _metrics.Values.Where(m => m.Name == prometheusName))
        {
            total += metric.Value(labels);
        }

        return total;
    }

    public void Dispose() => _listener.Dispose();

    internal static string Escape(string value, bool help = false)
    {
        if (value.AsSpan().IndexOfAny("\\\n\"") < 0)
        {
            return value;
        }

        var escaped = value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
        return help ? escaped : escaped.Replace("\"", "\\\"", StringComparison.Ordinal);
    }

    /// <summary>The Prometheus name of an instrument.</summary>
    internal static string NameOf(Instrument instrument, bool monotonic)
    {
        var name = new StringBuilder(instrument.Name.Length + 16);
        foreach (var c in instrument.Name)
        {
            name.Append(char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_');
        }

        var suffix = instrument.Unit switch
        {
            "s" => "_seconds",
            "ms" => "_milliseconds",
            "By" => "_bytes",
            _ => string.Empty,
        };
        if (suffix.Length > 0 && !name.ToString().EndsWith(suffix, StringComparison.Ordinal))
        {
            name.Append(suffix);
        }

        if (monotonic)
        {
            name.Append("_total");
        }

        return name.ToString();
    }

    private static string LabelName(string tag)
    {
        var name = new StringBuilder(tag.Length);
        foreach (var c in tag)
        {
            name.Append(char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_');
        }

        return name.ToString();
    }

    private static string Format(double value) =>
        double.IsPositiveInfinity(value) ? "+Inf" : double.IsNegativeInfinity(value) ? "-Inf" : double.IsNaN(value) ? "NaN"
            : value.ToString("R", CultureInfo.InvariantCulture);

    private enum Aggregation
    {
        Sum,
        LastValue,
        Histogram,
    }

    /// <summary>A label set: tag names and their values as strings.</summary>
    private sealed class SeriesKey(string[] names, string[] values)
    {
        public string[] Names { get; } = names;

        public string[] Values { get; } = values;

        /// <summary>
        /// Whether <paramref name="tags"/> are this label set by reference: the same name and value strings, in order.
        /// Never true for another label set; false for an equal one made of other string instances (then the dictionary
        /// decides).
        /// </summary>
        public bool IsExactly(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (tags.Length != Names.Length)
            {
                return false;
            }

            for (var i = 0; i < tags.Length; i++)
            {
                if (!ReferenceEquals(tags[i].Key, Names[i]) || !ReferenceEquals(tags[i].Value, Values[i]))
                {
                    return false;
                }
            }

            return true;
        }
    }

    /// <summary>Compares a measurement's tags with a stored label set without making one.</summary>
    private sealed class KeyComparer : IEqualityComparer<SeriesKey>, IAlternateEqualityComparer<ReadOnlySpan<KeyValuePair<string, object?>>, SeriesKey>
    {
        public static KeyComparer Instance { get; } = new();

        public bool Equals(SeriesKey? x, SeriesKey? y) =>
            ReferenceEquals(x, y) || (x is not null && y is not null && x.Names.AsSpan().SequenceEqual(y.Names) && x.Values.AsSpan().SequenceEqual(y.Values));

        public int GetHashCode(SeriesKey obj)
        {
            var hash = default(HashCode);
            for (var i = 0; i < obj.Names.Length; i++)
            {
                hash.Add(obj.Names[i]);
                hash.Add(obj.Values[i]);
            }

            return hash.ToHashCode();
        }

        public bool Equals(ReadOnlySpan<KeyValuePair<string, object?>> alternate, SeriesKey other)
        {
            if (alternate.Length != other.Names.Length)
            {
                return false;
            }

            for (var i = 0; i < alternate.Length; i++)
            {
                if (!string.Equals(alternate[i].Key, other.Names[i], StringComparison.Ordinal) || !ValueEquals(alternate[i].Value, other.Values[i]))
                {
                    return false;
                }
            }

            return true;
        }

        public int GetHashCode(ReadOnlySpan<KeyValuePair<string, object?>> alternate)
        {
            var hash = default(HashCode);
            foreach (var (name, value) in alternate)
            {
                hash.Add(name);
                hash.Add(value as string ?? Text(value));
            }

            return hash.ToHashCode();
        }

        public SeriesKey Create(ReadOnlySpan<KeyValuePair<string, object?>> alternate)
        {
            var names = new string[alternate.Length];
            var values = new string[alternate.Length];
            for (var i = 0; i < alternate.Length; i++)
            {
                names[i] = alternate[i].Key;
                values[i] = Text(alternate[i].Value);
            }

            return new SeriesKey(names, values);
        }

        private static bool ValueEquals(object? value, string stored) =>
            value is string text ? string.Equals(text, stored, StringComparison.Ordinal) : string.Equals(Text(value), stored, StringComparison.Ordinal);

        private static string Text(object? value) => value switch
        {
            null => string.Empty,
            string s => s,
            bool b => b ? "true" : "false",
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? string.Empty,
        };
    }

    private sealed class Series(SeriesKey key, int buckets)
    {
        private long _count;
        private double _sum;

        public SeriesKey Key { get; } = key;

        public long[] Buckets { get; } = buckets == 0 ? [] : new long[buckets];

        public long Count => Interlocked.Read(ref _count);

        public double Sum => Volatile.Read(ref _sum);

        public void Add(double value)
        {
            var current = Volatile.Read(ref _sum);
            while (true)
            {
                var seen = Interlocked.CompareExchange(ref _sum, current + value, current);
                if (seen.Equals(current))
                {
                    return;
                }

                current = seen;
            }
        }

        public void Set(double value) => Volatile.Write(ref _sum, value);

        public void Observe(double value, double[] bounds)
        {
            var index = Array.BinarySearch(bounds, value);
            index = index >= 0 ? index : ~index;
            Interlocked.Increment(ref Buckets[index]);
            Interlocked.Increment(ref _count);
            Add(value);
        }
    }

    private sealed class MetricState
    {
        private static readonly double[] DefaultBounds = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

        private readonly ConcurrentDictionary<SeriesKey, Series> _series = new(KeyComparer.Instance);
        private readonly ConcurrentDictionary<SeriesKey, Series>.AlternateLookup<ReadOnlySpan<KeyValuePair<string, object?>>> _lookup;
        private readonly Aggregation _aggregation;
        private readonly double[] _bounds = [];
        private readonly int _maxSeries;

        // The series the last measurement went to: a call records one instrument with the same tag strings (the model
        // and dialect names it holds, constant status and outcome texts), so comparing references usually finds it
        // without hashing every tag's text. Read and written without a lock: a reference is written whole, and a stale
        // one only costs the dictionary lookup.
        private Series? _last;

        public MetricState(Instrument instrument, int maxSeries)
        {
            _maxSeries = maxSeries;
            _lookup = _series.GetAlternateLookup<ReadOnlySpan<KeyValuePair<string, object?>>>();
            var monotonic = false;
            switch (instrument)
            {
                case Counter<long> or Counter<int> or Counter<double>:
                    _aggregation = Aggregation.Sum;
                    monotonic = true;
                    Type = "counter";
                    break;
                case UpDownCounter<long> or UpDownCounter<int> or UpDownCounter<double>:
                    _aggregation = Aggregation.Sum;
                    Type = "gauge";
                    break;
                case ObservableCounter<long> or ObservableCounter<int> or ObservableCounter<double>:
                    _aggregation = Aggregation.LastValue;
                    monotonic = true;
                    Type = "counter";
                    break;
                case Histogram<double> histogram:
                    _aggregation = Aggregation.Histogram;
                    _bounds = histogram.Advice?.HistogramBucketBoundaries is { Count: > 0 } advised ? [.. advised] : DefaultBounds;
                    Type = "histogram";
                    break;
                case Histogram<long> histogram:
                    _aggregation = Aggregation.Histogram;
                    _bounds = histogram.Advice?.HistogramBucketBoundaries is { Count: > 0 } advisedLong ? [.. advisedLong.Select(b => (double)b)] : DefaultBounds;
                    Type = "histogram";
                    break;
                default:
                    _aggregation = Aggregation.LastValue;
                    Type = "gauge";
                    break;
            }

            Name = NameOf(instrument, monotonic);
            Help = instrument.Description ?? instrument.Name;
        }

        public string Name { get; }

        public string Help { get; }

        public string Type { get; }

        public void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var series = Find(tags);
            switch (_aggregation)
            {
                case Aggregation.Sum:
                    series.Add(value);
                    break;
                case Aggregation.LastValue:
                    series.Set(value);
                    break;
                default:
                    series.Observe(value, _bounds);
                    break;
            }
        }

        public double Value((string Name, string Value)[] labels)
        {
            var total = 0.0;
            foreach (var series in _series.Values)
            {
                var match = labels.All(l => Array.IndexOf(series.Key.Names, l.Name) is var i && i >= 0 && series.Key.Values[i] == l.Value);
                if (match)
                {
                    total += _aggregation == Aggregation.Histogram ? series.Count : series.Sum;
                }
            }

            return total;
        }

        public void Write(StringBuilder output)
        {
            foreach (var series in _series.Values.OrderBy(s => string.Join('\u0001', s.Key.Values), StringComparer.Ordinal))
            {
                if (_aggregation != Aggregation.Histogram)
                {
                    output.Append(Name);
                    Labels(output, series.Key, null);
                    output.Append(' ').Append(Format(series.Sum)).Append('\n');
                    continue;
                }

                var cumulative = 0L;
                for (var i = 0; i <= _bounds.Length; i++)
                {
                    cumulative += Interlocked.Read(ref series.Buckets[i]);
                    output.Append(Name).Append("_bucket");
                    Labels(output, series.Key, i < _bounds.Length ? Format(_bounds[i]) : "+Inf");
                    output.Append(' ').Append(cumulative.ToString(CultureInfo.InvariantCulture)).Append('\n');
                }

                output.Append(Name).Append("_sum");
                Labels(output, series.Key, null);
                output.Append(' ').Append(Format(series.Sum)).Append('\n');
                output.Append(Name).Append("_count");
                Labels(output, series.Key, null);
                output.Append(' ').Append(cumulative.ToString(CultureInfo.InvariantCulture)).Append('\n');
            }
        }

        private static void Labels(StringBuilder output, SeriesKey key, string? le)
        {
            if (key.Names.Length == 0 && le is null)
            {
                return;
            }

            output.Append('{');
            for (var i = 0; i < key.Names.Length; i++)
            {
                output.Append(i == 0 ? string.Empty : ",").Append(LabelName(key.Names[i])).Append("=\"").Append(Escape(key.Values[i])).Append('"');
            }

            if (le is not null)
            {
                output.Append(key.Names.Length == 0 ? string.Empty : ",").Append("le=\"").Append(le).Append('"');
            }

            output.Append('}');
        }

        private Series Find(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (_last is { } last && last.Key.IsExactly(tags))
            {
                return last;
            }

            if (_lookup.TryGetValue(tags, out var series))
            {
                _last = series;
                return series;
            }

            var buckets = _aggregation == Aggregation.Histogram ? _bounds.Length + 1 : 0;
            if (_series.Count >= _maxSeries)
            {
                var names = new string[tags.Length];
                var values = new string[tags.Length];
                for (var i = 0; i < tags.Length; i++)
                {
                    names[i] = tags[i].Key;
                    values[i] = "_overflow";
                }

                var overflow = new SeriesKey(names, values);
                return _series.GetOrAdd(overflow, static (k, b) => new Series(k, b), buckets);
            }

            // Static factories with the bucket count as an argument: a lambda capturing it made a closure on every
            // measurement, found or not (the closure is created where the captured local's scope begins).
            var key = KeyComparer.Instance.Create(tags);
            return _series.GetOrAdd(key, static (k, b) => new Series(k, b), buckets);
        }
    }
}
