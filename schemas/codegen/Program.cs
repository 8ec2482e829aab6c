using System.CodeDom;
using Avro;

// Generates the C# classes of Avro schema files with Apache.Avro's CodeGen (the library behind avrogen).
//
//   StreamHealth.Schemas.CodeGen --out DIR --namespace AVRO=CSHARP [--namespace ...] FILE.avsc...
//
// Each file holds one top-level record, named like the file, with every record and enum it uses defined
// inline: CodeGen parses each schema text on its own, so a reference to a type defined in another file
// would not resolve. A type used by two files (WeightSource) is therefore defined in both; this tool
// fails when the definitions differ and generates the class once.
//
// Every Avro namespace must be listed (--namespace AVRO=CSHARP). The project lists each as itself: the schema files
// use the C# namespaces, because CodeGen's mapping would rewrite the namespace inside the schema (so the registered
// name would differ from the file) and Apache.Avro's specific reader finds the class by the schema's full name.
//
// DIR is emptied first, so a deleted .avsc leaves no class behind. Errors are printed in MSBuild's
// "file: error CODE: message" form and end the tool with exit code 1.

var outDir = "";
var mapping = new Dictionary<string, string>(StringComparer.Ordinal);
var files = new List<string>();
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--out" when i + 1 < args.Length:
            outDir = args[++i];
            break;
        case "--namespace" when i + 1 < args.Length:
            var pair = args[++i].Split('=', 2);
            if (pair.Length != 2 || pair[0].Length == 0 || pair[1].Length == 0)
                return Fail("StreamHealth.Schemas.CodeGen", $"--namespace wants AVRO=CSHARP, got '{args[i]}'");
            mapping[pair[0]] = pair[1];
            break;
        default:
            if (args[i].StartsWith("--", StringComparison.Ordinal))
                return Fail("StreamHealth.Schemas.CodeGen", $"unknown option '{args[i]}'");
            files.Add(args[i]);
            break;
    }
}
if (outDir.Length == 0 || files.Count == 0)
    return Fail("StreamHealth.Schemas.CodeGen", "usage: --out DIR --namespace AVRO=CSHARP... FILE.avsc...");

var codeGen = new CodeGen();
var mappedNamespaces = new HashSet<string>(mapping.Values, StringComparer.Ordinal);
// Full name of every named type -> (file that defined it first, its JSON).
var definitions = new Dictionary<string, (string File, string Json)>(StringComparer.Ordinal);
foreach (var file in files.Order(StringComparer.Ordinal))
{
    Schema schema;
    try
    {
        codeGen.AddSchema(File.ReadAllText(file), mapping);
        schema = codeGen.Schemas[^1];
    }
    catch (Exception e) when (e is AvroException or IOException)
    {
        return Fail(file, e.Message);
    }

    var expectedName = Path.GetFileNameWithoutExtension(file);
    if (schema is not RecordSchema record || record.Name != expectedName)
        return Fail(file, $"must hold one record named {expectedName} (one file per record type), not {schema.Tag} {(schema as NamedSchema)?.Name}");

    foreach (var named in NamedTypes(schema))
    {
        if (!mappedNamespaces.Contains(named.Namespace ?? ""))
            return Fail(file, $"{named.Fullname}: namespace '{named.Namespace}' has no --namespace mapping to a C# namespace");
        var json = named.ToString();
        if (!definitions.TryAdd(named.Fullname, (file, json)) && definitions[named.Fullname].Json != json)
            return Fail(file, $"{named.Fullname} differs from its definition in {definitions[named.Fullname].File}; a type defined in two files must be defined identically");
    }
}

CodeCompileUnit unit;
try
{
    unit = codeGen.GenerateCode();
}
catch (Exception e) when (e is AvroException or CodeGenException)
{
    return Fail("StreamHealth.Schemas.CodeGen", e.Message);
}

// A type defined in two files was added to its namespace twice: keep one.
foreach (CodeNamespace ns in unit.Namespaces)
{
    var seen = new HashSet<string>(StringComparer.Ordinal);
    for (var i = 0; i < ns.Types.Count; i++)
    {
        if (!seen.Add(ns.Types[i].Name))
            ns.Types.RemoveAt(i--);
    }
}

if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true);
Directory.CreateDirectory(outDir);
codeGen.WriteTypes(outDir);
Console.WriteLine($"StreamHealth.Schemas.CodeGen: {definitions.Count} types from {files.Count} schema files -> {outDir}");
return 0;

static int Fail(string origin, string message)
{
    Console.Error.WriteLine($"{origin}: error AVSC001: {message}");
    return 1;
}

// Every record, enum and fixed type in the schema (the schema itself included), once each.
static IEnumerable<NamedSchema> NamedTypes(Schema root)
{
    var seen = new HashSet<string>(StringComparer.Ordinal);
    var pending = new Stack<Schema>();
    pending.Push(root);
    while (pending.Count > 0)
    {
        switch (pending.Pop())
        {
            case NamedSchema named when !seen.Add(named.Fullname):
                break;
            case RecordSchema record:
                yield return record;
                foreach (var field in record.Fields) pending.Push(field.Schema);
                break;
            case NamedSchema named:
                yield return named;
                break;
            case ArraySchema array:
                pending.Push(array.ItemSchema);
                break;
            case MapSchema map:
                pending.Push(map.ValueSchema);
                break;
            case UnionSchema union:
                foreach (var branch in union.Schemas) pending.Push(branch);
                break;
            case LogicalSchema logical:
                pending.Push(logical.BaseSchema);
                break;
        }
    }
}
