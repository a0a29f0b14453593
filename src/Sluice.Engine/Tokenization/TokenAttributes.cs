namespace Sluice.Engine.Tokenization;

/// <summary>The GGUF <c>tokenizer.ggml.token_type</c> values.</summary>
public enum GgufTokenType
{
    /// <summary>Not set.</summary>
    Undefined = 0,

    /// <summary>An ordinary vocabulary entry.</summary>
    Normal = 1,

    /// <summary>The unknown token (<c>&lt;unk&gt;</c>).</summary>
    Unknown = 2,

    /// <summary>A control token such as BOS, EOS or <c>&lt;|im_start|&gt;</c>.</summary>
    Control = 3,

    /// <summary>An added token that is matched in text before tokenization even when specials are not parsed.</summary>
    UserDefined = 4,

    /// <summary>A placeholder that is never produced.</summary>
    Unused = 5,

    /// <summary>A byte token <c>&lt;0xXX&gt;</c> (SentencePiece byte fallback).</summary>
    Byte = 6,
}

/// <summary>Per-token attributes as llama.cpp keeps them (derived from the GGUF token type, plus name-based fixes).</summary>
[Flags]
public enum TokenAttributes
{
    /// <summary>No attribute.</summary>
    Undefined = 0,

    /// <summary>The unknown token.</summary>
    Unknown = 1 << 0,

    /// <summary>Never produced.</summary>
    Unused = 1 << 1,

    /// <summary>An ordinary token.</summary>
    Normal = 1 << 2,

    /// <summary>A control token: empty when detokenized unless specials are rendered.</summary>
    Control = 1 << 3,

    /// <summary>A user-defined token: matched in text before tokenization, always rendered.</summary>
    UserDefined = 1 << 4,

    /// <summary>A byte token.</summary>
    Byte = 1 << 5,

    /// <summary>Normalized (unused here).</summary>
    Normalized = 1 << 6,

    /// <summary>Whitespace before the token in text is dropped when it is matched.</summary>
    LStrip = 1 << 7,

    /// <summary>Whitespace after the token in text is dropped when it is matched.</summary>
    RStrip = 1 << 8,

    /// <summary>Single word (unused here).</summary>
    SingleWord = 1 << 9,
}
