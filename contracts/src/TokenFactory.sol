// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {CreditToken} from "./CreditToken.sol";
import {ExchangeRouter} from "./ExchangeRouter.sol";
import {RewardsToken} from "./RewardsToken.sol";
import {IRelayerRegistry} from "./SignedOperations.sol";

/// @title Creates a tenant's token contracts as EIP-1167 clones of implementations it deploys
/// (and locks) itself. Tenant onboarding is one `multicall` of `createRewards` and `createCredit`.
/// Clones are deployed with CREATE2 under a salt that includes the caller, so their addresses are known
/// before deployment (a retried deployment finds the contract already there instead of creating a
/// second one) and nobody else can put a contract of their own at the platform's address.
/// The factory also keeps the platform's relayer registry: every clone's `execute` accepts only the
/// relayers registered here by the owner, so one transaction adds or removes a relayer for all tenants.
/// It deploys the exchange router too: every clone accepts exchange legs from that router only.
contract TokenFactory is Multicall, Ownable, IRelayerRegistry {
    enum ContractKind {
        Credit,
        Rewards
    }

    CreditToken public immutable creditImplementation;
    RewardsToken public immutable rewardsImplementation;
    /// @notice The only caller the tokens accept exchange legs from (it checks this registry's relayers).
    ExchangeRouter public immutable exchangeRouter;

    /// @inheritdoc IRelayerRegistry
    mapping(address account => bool) public isRelayer;

    /// @notice The indexer discovers tenant contracts from this event; anyone may call the factory, so
    /// only events whose `creator` is the platform's deployer name the platform's contracts.
    event TenantContractCreated(
        bytes32 indexed tenantKey, ContractKind indexed kind, address contractAddress, address creator
    );
    event RelayerSet(address indexed account, bool allowed);

    constructor() Ownable(msg.sender) {
        address[] memory none = new address[](0);
        exchangeRouter = new ExchangeRouter();
        creditImplementation = new CreditToken(address(exchangeRouter));
        creditImplementation.initialize("", "", 0, 0, address(0), none);
        rewardsImplementation = new RewardsToken(address(exchangeRouter));
        rewardsImplementation.initialize("", address(0), none);
    }

    /// @notice Allows or revokes a relayer for every tenant contract.
    function setRelayer(address account, bool allowed) external onlyOwner {
        isRelayer[account] = allowed;
        emit RelayerSet(account, allowed);
    }

    function createCredit(
        bytes32 tenantKey,
        bytes32 salt,
        string calldata name,
        string calldata symbol,
        uint8 decimals,
        uint248 maxSupply,
        address admin,
        address[] calldata minters
    ) external returns (address token) {
        token = Clones.cloneDeterministic(address(creditImplementation), _salt(msg.sender, tenantKey, salt));
        CreditToken(token).initialize(name, symbol, decimals, maxSupply, admin, minters);
        emit TenantContractCreated(tenantKey, ContractKind.Credit, token, msg.sender);
    }

    function createRewards(bytes32 tenantKey, string calldata uri, address admin, address[] calldata minters)
        external
        returns (address token)
    {
        token = Clones.cloneDeterministic(address(rewardsImplementation), _salt(msg.sender, tenantKey, 0));
        RewardsToken(token).initialize(uri, admin, minters);
        emit TenantContractCreated(tenantKey, ContractKind.Rewards, token, msg.sender);
    }

    /// @notice Where `createCredit(tenantKey, salt, …)` called by `creator` deploys (or deployed) its clone.
    function creditAddress(address creator, bytes32 tenantKey, bytes32 salt) external view returns (address) {
        return Clones.predictDeterministicAddress(address(creditImplementation), _salt(creator, tenantKey, salt));
    }

    /// @notice Where `createRewards(tenantKey, …)` called by `creator` deploys (or deployed) the ERC-1155.
    function rewardsAddress(address creator, bytes32 tenantKey) external view returns (address) {
        return Clones.predictDeterministicAddress(address(rewardsImplementation), _salt(creator, tenantKey, 0));
    }

    function _salt(address creator, bytes32 tenantKey, bytes32 salt) private pure returns (bytes32) {
        return keccak256(abi.encode(creator, tenantKey, salt));
    }
}
