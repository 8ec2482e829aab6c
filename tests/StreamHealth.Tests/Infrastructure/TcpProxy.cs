using System.Net;
using System.Net.Sockets;

namespace StreamHealth.Tests.Infrastructure;

/// <summary>A loopback TCP relay in front of a real server, so a test can make that server unreachable
/// for one client (connections reset, new ones refused) without stopping it for the other tests.</summary>
public sealed class TcpProxy : IDisposable
{
    private readonly int _targetPort;
    private readonly List<TcpClient> _connections = [];
    private readonly Lock _gate = new();
    private TcpListener? _listener;
    private CancellationTokenSource _cut = new();

    public int Port { get; }

    public TcpProxy(int targetPort)
    {
        _targetPort = targetPort;
        Port = StreamTestKit.FreeLoopbackPort();
        Open();
    }

    /// <summary>Starts relaying again.</summary>
    public void Open()
    {
        lock (_gate)
        {
            _cut = new CancellationTokenSource();
            _listener = new TcpListener(IPAddress.Loopback, Port);
            _listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            _listener.Start();
            _ = AcceptLoop(_listener, _cut.Token);
        }
    }

    /// <summary>Drops every relayed connection and refuses new ones, as a stopped server does.</summary>
    public void Cut()
    {
        lock (_gate)
        {
            _cut.Cancel();
            _listener?.Stop();
            _listener = null;
            foreach (var c in _connections) c.Dispose();
            _connections.Clear();
        }
    }

    private async Task AcceptLoop(TcpListener listener, CancellationToken cut)
    {
        while (!cut.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await listener.AcceptTcpClientAsync(cut); }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
            var upstream = new TcpClient();
            try { await upstream.ConnectAsync(IPAddress.Loopback, _targetPort, cut); }
            catch (Exception e) when (e is OperationCanceledException or SocketException)
            {
                client.Dispose();
                upstream.Dispose();
                continue;
            }
            lock (_gate)
            {
                if (cut.IsCancellationRequested) { client.Dispose(); upstream.Dispose(); return; }
                _connections.Add(client);
                _connections.Add(upstream);
            }
            _ = Pump(client.GetStream(), upstream.GetStream(), client, upstream);
            _ = Pump(upstream.GetStream(), client.GetStream(), client, upstream);
        }
    }

    private static async Task Pump(NetworkStream from, NetworkStream to, TcpClient a, TcpClient b)
    {
        try { await from.CopyToAsync(to); }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException) { }
        finally
        {
            a.Dispose();
            b.Dispose();
        }
    }

    public void Dispose() => Cut();
}
